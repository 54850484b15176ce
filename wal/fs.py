"""The thin file layer under the log: every call that changes a file or makes it durable goes through it.

The default is the real OS. Tests inject `FaultyFileSystem` (ENOSPC, EIO or a failed fsync at a chosen
call) or `wal.powerloss.PowerLossFileSystem` (forgets what was never synced). Reads do not go through here:
what a reader sees is whatever the layer left on disk.
"""

from __future__ import annotations

import errno as errno_codes
import os
import threading
from pathlib import Path
from typing import Protocol

import attrs

_fdatasync = getattr(os, "fdatasync", os.fsync)  # macOS has no fdatasync; fsync is the safe superset


class FileSystem(Protocol):
    def open(self, path: Path, flags: int, mode: int = 0o644) -> int: ...
    def close(self, fd: int) -> None: ...
    def write(self, fd: int, data: bytes) -> int: ...
    def pwrite(self, fd: int, data: bytes, offset: int) -> int: ...
    def fdatasync(self, fd: int) -> None: ...
    def fsync(self, fd: int) -> None: ...
    def ftruncate(self, fd: int, length: int) -> None: ...
    def fallocate(self, fd: int, offset: int, length: int) -> None: ...
    def rename(self, src: Path, dst: Path) -> None: ...
    def unlink(self, path: Path) -> None: ...
    def fsync_dir(self, path: Path) -> None: ...


class OsFileSystem:
    """The real thing: each method is the system call of the same name."""

    def open(self, path: Path, flags: int, mode: int = 0o644) -> int:
        return os.open(path, flags | getattr(os, "O_CLOEXEC", 0), mode)

    def close(self, fd: int) -> None:
        os.close(fd)

    def write(self, fd: int, data: bytes) -> int:
        return os.write(fd, data)

    def pwrite(self, fd: int, data: bytes, offset: int) -> int:
        return os.pwrite(fd, data, offset)

    def fdatasync(self, fd: int) -> None:
        _fdatasync(fd)

    def fsync(self, fd: int) -> None:
        os.fsync(fd)

    def ftruncate(self, fd: int, length: int) -> None:
        os.ftruncate(fd, length)

    def fallocate(self, fd: int, offset: int, length: int) -> None:
        """Reserve blocks and extend the file with zeros (posix_fallocate); OSError where unsupported."""
        allocate = getattr(os, "posix_fallocate", None)
        if allocate is None:
            raise OSError(errno_codes.EOPNOTSUPP, "posix_fallocate is not available")
        allocate(fd, offset, length)

    def rename(self, src: Path, dst: Path) -> None:
        os.rename(src, dst)

    def unlink(self, path: Path) -> None:
        os.unlink(path)

    def fsync_dir(self, path: Path) -> None:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def pwrite_all(fs: FileSystem, fd: int, data: bytes, offset: int) -> None:
    """Write all of `data` at `offset`; a short write is continued (the next call reports ENOSPC if any)."""
    view = memoryview(data)
    done = 0
    while done < len(data):
        written = fs.pwrite(fd, bytes(view[done:]) if done else data, offset + done)
        if written <= 0:
            raise OSError(errno_codes.EIO, "pwrite wrote nothing")
        done += written


@attrs.define
class _Fault:
    op: str
    errno: int
    skip: int  # matching calls to let through first
    times: int | None  # None: fail until cleared
    partial: int  # for writes: bytes really written before the error is raised


class FaultyFileSystem(OsFileSystem):
    """Real files with failures injected on chosen calls, for tests.

    `inject("write", errno.ENOSPC, after=2)` lets two writes through and fails the third; `partial=` makes a
    failing write first put that many bytes on disk, as a real short write does before ENOSPC. Ops are the
    method names ("write" also covers pwrite). Thread-safe: the writer calls from its I/O thread.
    """

    OPS = frozenset(
        {"open", "write", "fdatasync", "fsync", "ftruncate", "fallocate", "rename", "unlink", "fsync_dir"}
    )

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[_Fault] = []
        self.calls: dict[str, int] = dict.fromkeys(self.OPS, 0)
        self.failures: dict[str, int] = dict.fromkeys(self.OPS, 0)

    def inject(self, op: str, errno: int, *, after: int = 0, times: int | None = 1, partial: int = 0) -> None:
        if op not in self.OPS:
            raise ValueError(f"unknown op {op!r}; one of {sorted(self.OPS)}")
        with self._lock:
            self._faults.append(_Fault(op, errno, after, times, partial))

    def clear(self) -> None:
        """The disk is healthy again (space freed, cable reseated)."""
        with self._lock:
            self._faults.clear()

    def _take(self, op: str) -> _Fault | None:
        with self._lock:
            self.calls[op] += 1
            for fault in self._faults:
                if fault.op != op:
                    continue
                if fault.skip > 0:
                    fault.skip -= 1
                    continue
                if fault.times is not None:
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                self.failures[op] += 1
                return fault
            return None

    def _fail(self, op: str) -> None:
        fault = self._take(op)
        if fault is not None:
            raise OSError(
                fault.errno, f"injected {errno_codes.errorcode.get(fault.errno, fault.errno)} on {op}"
            )

    def open(self, path: Path, flags: int, mode: int = 0o644) -> int:
        self._fail("open")
        return super().open(path, flags, mode)

    def write(self, fd: int, data: bytes) -> int:
        fault = self._take("write")
        if fault is not None:
            if fault.partial:
                os.write(fd, data[: fault.partial])
            raise OSError(fault.errno, "injected write failure")
        return super().write(fd, data)

    def pwrite(self, fd: int, data: bytes, offset: int) -> int:
        fault = self._take("write")
        if fault is not None:
            if fault.partial:
                os.pwrite(fd, data[: fault.partial], offset)
            raise OSError(fault.errno, "injected write failure")
        return super().pwrite(fd, data, offset)

    def fdatasync(self, fd: int) -> None:
        self._fail("fdatasync")
        super().fdatasync(fd)

    def fsync(self, fd: int) -> None:
        self._fail("fsync")
        super().fsync(fd)

    def ftruncate(self, fd: int, length: int) -> None:
        self._fail("ftruncate")
        super().ftruncate(fd, length)

    def fallocate(self, fd: int, offset: int, length: int) -> None:
        self._fail("fallocate")
        super().fallocate(fd, offset, length)

    def rename(self, src: Path, dst: Path) -> None:
        self._fail("rename")
        super().rename(src, dst)

    def unlink(self, path: Path) -> None:
        self._fail("unlink")
        super().unlink(path)

    def fsync_dir(self, path: Path) -> None:
        self._fail("fsync_dir")
        super().fsync_dir(path)
