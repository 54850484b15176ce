"""Segment files: their names, their header, and a read-only scan of their frames.

A segment is named by the LSN of its first record, zero-padded so names sort in LSN order
(`00000000000000000001.wal`), and begins with a 24-byte header (little-endian):

    offset  size  field
    0       8     magic b"ILWALSEG"
    8       2     format version (1)
    10      2     reserved flags (0)
    12      8     first LSN (must match the file name)
    20      4     CRC32C of bytes 0-19

Frames (see `wal.codec`) follow the header back to back. A segment is sealed once a later segment exists;
only the newest one is appended to.
"""

from __future__ import annotations

import enum
import itertools
import os
import re
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import attrs
from crc32c import crc32c

from wal.codec import (
    FRAME_HEADER,
    FRAME_HEADER_SIZE,
    KNOWN_FLAGS,
    MAX_PAYLOAD_BYTES,
    Frame,
    FrameDecoder,
    FrameError,
    NeedMore,
)

SEGMENT_MAGIC = b"ILWALSEG"
FORMAT_VERSION = 1
SEGMENT_HEADER = struct.Struct("<8sHHQI")
SEGMENT_HEADER_SIZE = SEGMENT_HEADER.size  # 24
SEGMENT_SUFFIX = ".wal"
TEMP_SUFFIX = ".tmp"  # a segment being created; renamed into place only once its header is durable
DEFAULT_SEGMENT_BYTES = 64 * 2**20

_NAME_RE = re.compile(r"^(\d{20})\.wal$")
_READ_CHUNK = 1 << 20
_SCAN_CHUNK = 8 << 20


def segment_name(first_lsn: int) -> str:
    return f"{first_lsn:020d}{SEGMENT_SUFFIX}"


def parse_segment_name(name: str) -> int | None:
    """The first LSN a segment file name declares, or None for a file that is not a segment."""
    match = _NAME_RE.match(name)
    return int(match.group(1)) if match else None


def encode_segment_header(first_lsn: int) -> bytes:
    head = SEGMENT_HEADER.pack(SEGMENT_MAGIC, FORMAT_VERSION, 0, first_lsn, 0)[:-4]
    return head + struct.pack("<I", crc32c(head))


class HeaderProblem(enum.StrEnum):
    SHORT = "short"  # fewer bytes than a header: the file's creation was cut short
    BAD_MAGIC = "bad_magic"
    BAD_CHECKSUM = "bad_checksum"
    BAD_VERSION = "bad_version"
    NAME_MISMATCH = "name_mismatch"


@attrs.frozen
class HeaderError:
    problem: HeaderProblem
    detail: str


def check_segment_header(data: bytes, expected_first_lsn: int) -> HeaderError | None:
    """None when `data` starts with a valid header for a segment whose name says `expected_first_lsn`."""
    if len(data) < SEGMENT_HEADER_SIZE:
        return HeaderError(HeaderProblem.SHORT, f"{len(data)} of {SEGMENT_HEADER_SIZE} header bytes")
    magic, version, _flags, first_lsn, stored = SEGMENT_HEADER.unpack_from(data)
    if magic != SEGMENT_MAGIC:
        return HeaderError(HeaderProblem.BAD_MAGIC, f"magic {magic!r}")
    actual = crc32c(data[: SEGMENT_HEADER_SIZE - 4])
    if actual != stored:
        return HeaderError(
            HeaderProblem.BAD_CHECKSUM, f"header CRC32C {stored:#010x}, computed {actual:#010x}"
        )
    if version != FORMAT_VERSION:
        return HeaderError(
            HeaderProblem.BAD_VERSION, f"format version {version}, this build reads {FORMAT_VERSION}"
        )
    if first_lsn != expected_first_lsn:
        return HeaderError(HeaderProblem.NAME_MISMATCH, f"header says first LSN {first_lsn}")
    return None


class SegmentStatus(enum.StrEnum):
    OK = "ok"
    TORN_TAIL = "torn_tail"  # the last segment ends in an incomplete last write; recovery cuts it
    CORRUPT = "corrupt"
    UNCHECKED = "unchecked"  # listed from file names only (list_segments without verify)


@attrs.frozen
class SegmentInfo:
    """One segment file as found on disk."""

    path: Path
    first_lsn: int
    last_lsn: int | None  # None when the segment holds no record yet
    size: int  # bytes in the file now
    sealed: bool  # a later segment exists, so nothing is ever appended here again
    record_count: int
    valid_size: int  # bytes up to the end of the last whole, valid record
    status: SegmentStatus = SegmentStatus.OK
    problem: str | None = None

    @property
    def name(self) -> str:
        return self.path.name


@attrs.frozen
class SegmentScan:
    """What a read-only pass over one segment found; the decision torn-or-corrupt is recovery's."""

    path: Path
    first_lsn: int
    size: int
    header_error: HeaderError | None
    record_count: int
    last_lsn: int | None
    valid_size: int  # end of the last valid frame (the header size if none)
    frame_error: FrameError | None  # the first undecodable frame, if any


def length_seed(view: memoryview, pos: int, length: int, seeds: dict[int, int]) -> int:
    """The CRC of the frame at `pos` over its 4-byte length field, remembered per length in `seeds` (up to
    65,536 lengths, so a damaged log cannot grow it without bound). Only called on a miss: the fast frame
    walks look `seeds` up inline."""
    seed = crc32c(view[pos : pos + 4])
    if len(seeds) < 65_536:
        seeds[length] = seed
    return seed


def _skip_valid_frames(data: bytes, pos: int, expected_lsn: int, until_lsn: int = 0) -> tuple[int, int]:
    """Walk the frames of `data` from `pos` that are whole, checksum-valid and in LSN order; return where
    the walk stopped and the LSN expected there. No Frame objects, no payload copies: a start-up checks
    every sealed segment, and this is about five times faster than the decoder. It stops at the first
    frame it cannot vouch for (incomplete, damaged or free space); `scan_segment` hands that to the
    decoder, which names the problem exactly as before. With `until_lsn`, it also stops before that LSN.

    `bulk.segment_frames` and `bulk.leading_frames` take frames by the same rule in loops of their own
    (each per-frame call costs a hot loop ~10 %): a change to the rule goes into all three."""
    unpack = FRAME_HEADER.unpack_from
    end_of_data = len(data)
    unknown_flags = ~KNOWN_FLAGS
    # The checksum starts with the 4-byte length field; its CRC depends on the length alone, and records
    # of one kind have few distinct lengths, so it is computed once per length.
    seeds: dict[int, int] = {}
    view = memoryview(data)
    try:
        while pos + FRAME_HEADER_SIZE <= end_of_data:
            length, crc, lsn, _record_type, flags = unpack(data, pos)
            end = pos + FRAME_HEADER_SIZE + length
            if (
                lsn != expected_lsn
                or lsn == until_lsn
                or end > end_of_data
                or length > MAX_PAYLOAD_BYTES
                or flags & unknown_flags
            ):
                break
            seed = seeds.get(length)
            if seed is None:
                seed = length_seed(view, pos, length, seeds)
            if crc32c(view[pos + 8 : end], seed) != crc:
                break
            pos = end
            expected_lsn += 1
    finally:
        view.release()
    return pos, expected_lsn


def _walk_valid_frames(f: BinaryIO, offset: int, expected: int, until_lsn: int = 0) -> tuple[int, int]:
    """From `offset` of an open file (positioned there), the fast path over valid frames, chunk by chunk
    (a frame cut by a chunk's end is carried over); returns where it stopped and the LSN expected there."""
    data = b""
    while chunk := f.read(_SCAN_CHUNK):
        data = data + chunk if data else chunk
        pos, expected = _skip_valid_frames(data, 0, expected, until_lsn)
        offset, data = offset + pos, data[pos:]
        if expected == until_lsn or (len(data) >= FRAME_HEADER_SIZE and _frame_end(data) <= len(data)):
            break  # reached, or a whole frame the fast path would not take: the decoder says why
    return offset, expected


def frame_offset(path: Path, first_lsn: int, lsn: int) -> tuple[int, int]:
    """Where in a segment the frame of `lsn` starts, found without decoding the frames before it (their
    checksums are checked): (offset, LSN there). Stops earlier at anything the decoder must look at, so
    a reader that continues from the result sees every problem it would have seen from the start."""
    with open(path, "rb") as f:
        f.seek(SEGMENT_HEADER_SIZE)
        return _walk_valid_frames(f, SEGMENT_HEADER_SIZE, first_lsn, lsn)


def scan_segment(path: Path, first_lsn: int) -> SegmentScan:
    """Verify a segment's header and every frame, stopping at the first bad one. Reads only."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(SEGMENT_HEADER_SIZE)
        header_error = check_segment_header(head, first_lsn)
        if header_error is not None:
            return SegmentScan(path, first_lsn, size, header_error, 0, None, 0, None)
        offset, expected = _walk_valid_frames(f, SEGMENT_HEADER_SIZE, first_lsn)
        count = expected - first_lsn
        last: int | None = expected - 1 if count else None
        valid = offset
        # The rest (normally nothing, or the active segment's free space) through the decoder.
        f.seek(offset)
        try:
            for frame in _frames_from(f, offset, expected):
                count += 1
                last = frame.lsn
                valid = frame.end
        except FrameError as exc:
            return SegmentScan(path, first_lsn, size, None, count, last, valid, exc)
    return SegmentScan(path, first_lsn, size, None, count, last, valid, None)


def _frame_end(data: bytes) -> int:
    """Where the frame whose header starts `data` claims to end; 0 for a length no frame can have, so the
    caller stops there instead of reading the rest of the file for it."""
    (length,) = struct.unpack_from("<I", data)
    return 0 if length > MAX_PAYLOAD_BYTES else FRAME_HEADER_SIZE + length


def _frames_from(f: BinaryIO, offset: int, expected_lsn: int) -> Iterator[Frame]:
    """Frames of an open binary file from `offset` to its end; raises FrameError at the first bad one."""
    decoder = FrameDecoder(offset=offset, expected_lsn=expected_lsn)
    while True:
        chunk = f.read(_READ_CHUNK)
        if chunk:
            decoder.feed(chunk)
        else:
            decoder.feed_eof()
        while True:
            item = decoder.next_frame()
            if isinstance(item, NeedMore):
                break
            yield item
        if not chunk:
            return


def read_frames(path: Path, *, offset: int, expected_lsn: int) -> Iterator[Frame]:
    """Frames of a segment file from a frame boundary `offset`; raises FrameError at the first bad one."""
    with open(path, "rb") as f:
        f.seek(offset)
        yield from _frames_from(f, offset, expected_lsn)


def list_segment_files(wal_dir: Path) -> list[tuple[int, Path]]:
    """(first LSN, path) of every segment file, in LSN order. Other files are not the log's business."""
    found = []
    try:
        entries = list(os.scandir(wal_dir))
    except FileNotFoundError:
        return []
    for entry in entries:
        first = parse_segment_name(entry.name)
        if first is not None and entry.is_file():
            found.append((first, Path(entry.path)))
    found.sort()
    return found


def list_segments(wal_dir: Path, *, verify: bool = False) -> list[SegmentInfo]:
    """Every segment with its LSN range, size and sealed state, in LSN order. Reads only.

    By default cheap enough to poll (the backup shipper does): a sealed segment's range follows from the
    names, since the next segment starts where it ends, and only the last segment is scanned; sealed
    segments then carry status UNCHECKED. With `verify`, every frame's checksum is checked and the statuses
    are those of `wal.recover.inspect_log` (which never raises for damaged content).
    """
    from wal.recover import inspect_log  # the classification lives with recovery; import late, no cycle

    if verify:
        return list(inspect_log(wal_dir).segments)
    files = list_segment_files(Path(wal_dir))
    if not files:
        return []
    infos = []
    for (first, path), (next_first, _) in itertools.pairwise(files):
        count = next_first - first
        infos.append(
            SegmentInfo(
                path=path,
                first_lsn=first,
                last_lsn=next_first - 1 if count > 0 else None,
                size=path.stat().st_size,
                sealed=True,
                record_count=max(count, 0),
                valid_size=path.stat().st_size,
                status=SegmentStatus.UNCHECKED,
            )
        )
    last = inspect_log(wal_dir, only_last=True).segments
    return infos + list(last)
