"""Shared helpers for the WAL tests: build real logs on disk through the same code the writer uses."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import anyio

from wal.appender import SegmentAppender
from wal.fs import OsFileSystem
from wal.reader import LogEntry, iter_frames
from wal.recover import open_log


def write_log(
    wal_dir: Path,
    batches: list[list[bytes]] | list[list[tuple[int, bytes]]],
    *,
    segment_bytes: int = 4096,
    record_type: int = 1,
    preallocate: bool = True,
) -> int:
    """Append each batch as one group commit (one write + fdatasync); return the last LSN. Items are payloads
    (of `record_type`) or (type, payload) pairs."""
    report = open_log(wal_dir)
    appender = SegmentAppender(wal_dir, OsFileSystem(), segment_bytes=segment_bytes, preallocate=preallocate)
    appender.open(report)
    lsn = report.last_lsn + 1
    try:
        for batch in batches:
            records = [item if isinstance(item, tuple) else (record_type, item) for item in batch]
            result = appender.commit(lsn, records)
            assert result.error is None, result.error
            lsn = result.durable_lsn + 1
    finally:
        appender.close()
    return lsn - 1


def entries(wal_dir: Path, from_lsn: int = 1) -> list[LogEntry]:
    return list(iter_frames(wal_dir, from_lsn))


def payloads(wal_dir: Path) -> list[bytes]:
    return [e.payload for e in iter_frames(wal_dir)]


def segment_files(wal_dir: Path) -> list[Path]:
    return sorted(wal_dir.glob("*.wal"))


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x40
    path.write_bytes(bytes(data))


def truncate(path: Path, length: int) -> None:
    with open(path, "r+b") as f:
        f.truncate(length)


async def eventually(predicate: Callable[[], bool], within: float = 5.0) -> None:
    """Wait until another task or thread has made `predicate` true."""
    with anyio.fail_after(within):
        while not predicate():  # polling: the state is changed by other tasks and threads
            await anyio.sleep(0.005)
