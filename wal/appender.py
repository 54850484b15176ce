"""The owner of the active segment's file: blocking code that only the writer's I/O thread runs.

One `commit` is one group commit: encode the batch, write it with one pwrite, fdatasync once, and roll
over to a new segment first when the batch would not fit. The return value says how far the log is now
durable; the writer acknowledges exactly that far.
"""

from __future__ import annotations

import errno as errno_codes
import os
from collections.abc import Sequence
from pathlib import Path

import attrs

from wal.codec import FRAME_HEADER_SIZE, encode_batch
from wal.errors import WalError, WalFatalError, WalFsyncError, WalWriteError
from wal.fs import FileSystem, pwrite_all
from wal.recover import RecoveryReport
from wal.segment import SEGMENT_HEADER_SIZE, TEMP_SUFFIX, encode_segment_header, segment_name


@attrs.frozen
class CommitResult:
    durable_lsn: int  # every LSN up to this one is on disk (fdatasync returned)
    sealed_lsn: int | None  # last LSN of a segment this commit sealed by rolling over
    error: WalError | None = None  # why the LSNs after `durable_lsn` were not written
    fatal: bool = False  # the writer must stop
    #: The active segment and its size once this commit returned: what is durable in it (for shipping the
    #: active segment's prefix off the machine before it is sealed).
    active_path: Path | None = None
    active_size: int = 0


def _describe(exc: OSError) -> str:
    name = errno_codes.errorcode.get(exc.errno, str(exc.errno)) if exc.errno is not None else "error"
    return f"{name}: {exc.strerror or exc}"


class SegmentAppender:
    def __init__(
        self, wal_dir: Path, fs: FileSystem, *, segment_bytes: int, preallocate: bool = True
    ) -> None:
        self._dir = Path(wal_dir)
        self._fs = fs
        self._segment_bytes = segment_bytes
        self._preallocate = preallocate
        self._fd: int | None = None
        self._path: Path | None = None
        self._size = 0  # bytes in the active segment: the offset of the next write

    @property
    def active_segment(self) -> Path | None:
        return self._path

    @property
    def size(self) -> int:
        return self._size

    def open(self, report: RecoveryReport) -> None:
        """Continue the last segment that recovery left, or create the first one."""
        active = report.active_segment
        if active is None:
            self._dir.mkdir(parents=True, exist_ok=True)
            self._fs.fsync_dir(self._dir.parent)  # make the new directory's own entry durable
            self._create_segment(report.last_lsn + 1)
            return
        fd = self._fs.open(active.path, os.O_WRONLY)
        self._fd, self._path = fd, active.path
        self._size = active.valid_size  # the end of the last record; beyond it is free (zero) space
        if os.fstat(fd).st_size < self._segment_bytes:
            self._reserve(fd)

    def _reserve(self, fd: int) -> None:
        """Preallocate the segment. Overwriting reserved blocks spares each fdatasync the file-size update
        an append needs (about 45 µs of ~140 on the benchmark disk). Best effort: without it, writes
        simply extend the file, and a full disk shows up as ENOSPC on the write."""
        if not self._preallocate:
            return
        try:
            self._fs.fallocate(fd, 0, self._segment_bytes)
        except OSError:
            pass

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            self._fs.close(fd)

    def commit(self, first_lsn: int, records: Sequence[tuple[int, bytes]]) -> CommitResult:
        durable = first_lsn - 1
        sealed: int | None = None
        index = 0
        try:
            while index < len(records):
                lsn = first_lsn + index
                if self._size > SEGMENT_HEADER_SIZE and not self._fits(records[index], self._size):
                    self._seal()
                    self._create_segment(lsn)
                    sealed = lsn - 1
                end, size = index + 1, self._size + FRAME_HEADER_SIZE + len(records[index][1])
                while end < len(records) and self._fits(records[end], size):
                    size += FRAME_HEADER_SIZE + len(records[end][1])
                    end += 1
                self._write(encode_batch(lsn, records[index:end]), lsn, lsn + end - index - 1)
                self._sync()
                durable = lsn + end - index - 1
                index = end
        except WalWriteError as exc:
            return CommitResult(durable, sealed, exc, active_path=self._path, active_size=self._size)
        except WalFatalError as exc:
            return CommitResult(durable, sealed, exc, fatal=True)
        return CommitResult(durable, sealed, active_path=self._path, active_size=self._size)

    def _fits(self, record: tuple[int, bytes], size: int) -> bool:
        return size + FRAME_HEADER_SIZE + len(record[1]) <= self._segment_bytes

    def _write(self, data: bytes, first: int, last: int) -> None:
        assert self._fd is not None and self._path is not None
        offset = self._size
        try:
            pwrite_all(self._fs, self._fd, data, offset)
        except OSError as exc:
            # Cut off whatever part of the batch reached the file, and make the cut durable before anyone
            # hears of the failure: a record reported as not written must not come back after a power cut.
            try:
                self._fs.ftruncate(self._fd, offset)
                self._reserve(self._fd)  # the cut also dropped the preallocated space; take it back if we can
                self._fs.fdatasync(self._fd)
            except OSError as again:
                raise WalFatalError(
                    f"could not cut a failed write back to offset {offset} of {self._path.name} "
                    f"({_describe(again)}); the writer stops"
                ) from exc
            raise WalWriteError(
                f"could not write LSN {first}-{last} to {self._path.name} ({_describe(exc)}); "
                "nothing of this batch was acknowledged or kept",
                exc.errno,
            ) from exc
        self._size = offset + len(data)

    def _sync(self) -> None:
        assert self._fd is not None and self._path is not None
        try:
            self._fs.fdatasync(self._fd)
        except OSError as exc:
            raise WalFsyncError(
                f"fdatasync of {self._path.name} failed ({_describe(exc)}); never retried, the writer stops"
            ) from exc

    def _seal(self) -> None:
        """Cut the active segment's unused preallocated space, so a sealed segment ends exactly at its last
        record (a sealed segment with trailing zeros would read as corruption). Its records are already
        durable; the sync makes the new length durable before a later segment exists."""
        assert self._fd is not None and self._path is not None
        try:
            self._fs.ftruncate(self._fd, self._size)
        except OSError as exc:
            raise WalWriteError(f"could not seal {self._path.name} ({_describe(exc)})", exc.errno) from exc
        self._sync()

    def _create_segment(self, first_lsn: int) -> None:
        """A new segment, durable with its header before it is used: written under a temporary name,
        fsynced, renamed into place, and the directory fsynced (WAL rule 2)."""
        name = segment_name(first_lsn)
        final = self._dir / name
        temp = self._dir / (name + TEMP_SUFFIX)
        fs = self._fs
        try:
            fd = fs.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        except OSError as exc:
            raise WalWriteError(f"could not create segment {name} ({_describe(exc)})", exc.errno) from exc
        try:
            try:
                pwrite_all(fs, fd, encode_segment_header(first_lsn), 0)
            except OSError as exc:
                raise WalWriteError(f"could not write segment {name} ({_describe(exc)})", exc.errno) from exc
            self._reserve(fd)
            try:
                fs.fsync(fd)
            except OSError as exc:
                raise WalFsyncError(f"fsync of new segment {name} failed ({_describe(exc)})") from exc
            try:
                fs.rename(temp, final)
            except OSError as exc:
                raise WalWriteError(f"could not rename segment {name} ({_describe(exc)})", exc.errno) from exc
        except WalError:
            fs.close(fd)
            try:
                fs.unlink(temp)
            except OSError:
                pass  # a leftover temporary file is removed by the next recovery
            raise
        try:
            fs.fsync_dir(self._dir)
        except OSError as exc:
            fs.close(fd)
            raise WalFsyncError(
                f"fsync of {self._dir} after creating {name} failed ({_describe(exc)})"
            ) from exc
        self.close()
        self._fd, self._path, self._size = fd, final, SEGMENT_HEADER_SIZE
