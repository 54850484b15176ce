"""The crash-safe write-ahead log: the one record of truth (DESIGN.md, "The one rule").

Knows nothing of Discord or SQLite. `codec` is pure (bytes in, frames out); `segment` and `recover` read
and repair files; `writer` is the anyio actor that appends with group commit; `reader` iterates and
follows the log.
"""

from __future__ import annotations

from wal.bulk import RawFrame
from wal.codec import (
    FLAG_BATCH_START,
    FRAME_HEADER_SIZE,
    MAX_PAYLOAD_BYTES,
    Frame,
    FrameDecoder,
    FrameError,
    FrameErrorKind,
    NeedMore,
    encode_batch,
    encode_frame,
)
from wal.errors import (
    WalClosedError,
    WalCorruption,
    WalError,
    WalFatalError,
    WalFormatError,
    WalFsyncError,
    WalWriteError,
)
from wal.fs import FaultyFileSystem, FileSystem, OsFileSystem
from wal.reader import LogEntry, follow, iter_frames, iter_raw_frames
from wal.recover import LogInspection, RecoveryReport, TornTail, inspect_log, open_log
from wal.segment import (
    DEFAULT_SEGMENT_BYTES,
    SEGMENT_HEADER_SIZE,
    SegmentInfo,
    SegmentStatus,
    list_segments,
    segment_name,
)
from wal.watermark import Watermark
from wal.writer import DEFAULT_BATCH_BYTES, WalWriter

__all__ = [
    "DEFAULT_BATCH_BYTES",
    "DEFAULT_SEGMENT_BYTES",
    "FLAG_BATCH_START",
    "FRAME_HEADER_SIZE",
    "MAX_PAYLOAD_BYTES",
    "SEGMENT_HEADER_SIZE",
    "FaultyFileSystem",
    "FileSystem",
    "Frame",
    "FrameDecoder",
    "FrameError",
    "FrameErrorKind",
    "LogEntry",
    "LogInspection",
    "NeedMore",
    "OsFileSystem",
    "RawFrame",
    "RecoveryReport",
    "SegmentInfo",
    "SegmentStatus",
    "TornTail",
    "WalClosedError",
    "WalCorruption",
    "WalError",
    "WalFatalError",
    "WalFormatError",
    "WalFsyncError",
    "WalWriteError",
    "WalWriter",
    "Watermark",
    "encode_batch",
    "encode_frame",
    "follow",
    "inspect_log",
    "iter_frames",
    "iter_raw_frames",
    "list_segments",
    "open_log",
    "segment_name",
]
