"""A file layer that remembers what was made durable, so a test can cut the power and see what survives.

It sits under the log like `OsFileSystem` (and over any inner layer, e.g. `FaultyFileSystem` for ENOSPC),
performs every call for real, and keeps a model of one directory: for each file the content as of its last
fsync/fdatasync plus the changes made since, and the directory entries as of the last fsync of the
directory. `cut_power_after(n)` makes the n+1-th call from now raise `SimulatedPowerCut` (and every call
after it), as if the machine died there. `apply_power_loss(...)` then rewrites the real directory into a
state a power cut could leave: synced data intact; unsynced changes lost whole, kept, torn sector by sector
in any order, cut short, or garbled; files and renames not yet made durable by a directory fsync gone.
"""

from __future__ import annotations

import enum
import os
import random
import threading
from pathlib import Path

import attrs

from wal.fs import FileSystem, OsFileSystem

SECTOR = 512  # the unit a torn write keeps or loses


class SimulatedPowerCut(Exception):
    """The simulated machine lost power: this call and every later one did not happen."""


class LossPolicy(enum.StrEnum):
    LOSE = "lose"  # every unsynced change is gone
    KEEP = "keep"  # every unsynced change survived (as after a process crash)
    TORN = "torn"  # each unsynced change kept, lost, or torn sector by sector, independently
    TRUNCATE = "truncate"  # changes kept, then each changed file cut at a random byte of its unsynced region
    GARBLE = "garble"  # changes kept, then random bytes written over parts of the unsynced region


@attrs.define
class _Write:
    offset: int
    data: bytes


@attrs.define
class _Resize:
    length: int
    grow_only: bool  # fallocate only ever grows a file; ftruncate sets the length


@attrs.define
class _Inode:
    durable: bytearray
    pending: list[_Write | _Resize] = attrs.Factory(list)


def _apply(content: bytearray, op: _Write | _Resize) -> None:
    if isinstance(op, _Resize):
        if op.length < len(content):
            if not op.grow_only:
                del content[op.length :]
        else:
            content.extend(bytes(op.length - len(content)))
        return
    end = op.offset + len(op.data)
    if end > len(content):
        content.extend(bytes(end - len(content)))
    content[op.offset : end] = op.data


class PowerLossFileSystem:
    def __init__(self, directory: Path, inner: FileSystem | None = None) -> None:
        self.directory = Path(directory)
        self.inner: FileSystem = inner if inner is not None else OsFileSystem()
        self._lock = threading.Lock()
        self._inodes: dict[int, _Inode] = {}
        self._fd_inode: dict[int, int] = {}
        self._durable_names: dict[str, int] = {}
        self._calls_left: int | None = None
        self._cut_at: tuple[str, int] | None = None  # (op, how many more of it may happen first)
        self.power_cut = False
        if self.directory.is_dir():  # what exists already is taken as durable
            for path in self.directory.iterdir():
                if path.is_file():
                    ino = path.stat().st_ino
                    self._inodes[ino] = _Inode(bytearray(path.read_bytes()))
                    self._durable_names[path.name] = ino

    # -- the switch ---------------------------------------------------------------------------------

    def cut_power_after(self, calls: int) -> None:
        """Let `calls` more file calls happen; the next one raises SimulatedPowerCut."""
        with self._lock:
            self._calls_left = calls

    def cut_power_at(self, op: str, skip: int = 0) -> None:
        """Cut the power as the (skip+1)-th call of `op` from now begins, e.g. just before an fdatasync: the
        moment when written bytes are most exposed."""
        with self._lock:
            self._cut_at = (op, skip)

    def cut_power(self) -> None:
        with self._lock:
            self.power_cut = True

    def _gate(self, op: str) -> None:
        with self._lock:
            if not self.power_cut and self._calls_left is not None:
                if self._calls_left <= 0:
                    self.power_cut = True
                else:
                    self._calls_left -= 1
            if not self.power_cut and self._cut_at is not None and self._cut_at[0] == op:
                if self._cut_at[1] <= 0:
                    self.power_cut = True
                else:
                    self._cut_at = (op, self._cut_at[1] - 1)
            if self.power_cut:
                raise SimulatedPowerCut(f"the power is off ({op})")

    def _inode_of(self, fd: int) -> _Inode | None:
        ino = self._fd_inode.get(fd)
        return self._inodes.get(ino) if ino is not None else None

    def _modelled(self, path: Path) -> bool:
        return Path(path).parent.resolve() == self.directory.resolve()

    # -- FileSystem ---------------------------------------------------------------------------------

    def open(self, path: Path, flags: int, mode: int = 0o644) -> int:
        self._gate("open")
        existed = Path(path).exists()
        fd = self.inner.open(path, flags, mode)
        if self._modelled(path):
            ino = os.fstat(fd).st_ino
            with self._lock:
                self._fd_inode[fd] = ino
                if ino not in self._inodes:
                    # A new file's content is durable as empty; one created outside the model as it is.
                    self._inodes[ino] = _Inode(bytearray(Path(path).read_bytes() if existed else b""))
                if existed and flags & os.O_TRUNC:
                    self._inodes[ino].pending.append(_Resize(0, grow_only=False))
        return fd

    def close(self, fd: int) -> None:
        with self._lock:
            self._fd_inode.pop(fd, None)
        self.inner.close(fd)

    def write(self, fd: int, data: bytes) -> int:
        return self.pwrite(fd, data, os.lseek(fd, 0, os.SEEK_CUR))

    def pwrite(self, fd: int, data: bytes, offset: int) -> int:
        self._gate("write")
        inode = self._inode_of(fd)
        try:
            written = self.inner.pwrite(fd, data, offset)
        except OSError:
            if inode is not None:  # record whatever part of it reached the file before the error
                landed = os.pread(fd, len(data), offset)
                with self._lock:
                    inode.pending.append(_Write(offset, landed))
            raise
        if inode is not None:
            with self._lock:
                inode.pending.append(_Write(offset, bytes(data[:written])))
        return written

    def _sync(self, fd: int) -> None:
        inode = self._inode_of(fd)
        if inode is not None:
            with self._lock:
                for op in inode.pending:
                    _apply(inode.durable, op)
                inode.pending.clear()

    def fdatasync(self, fd: int) -> None:
        self._gate("fdatasync")
        self.inner.fdatasync(fd)
        self._sync(fd)

    def fsync(self, fd: int) -> None:
        self._gate("fsync")
        self.inner.fsync(fd)
        self._sync(fd)

    def ftruncate(self, fd: int, length: int) -> None:
        self._gate("ftruncate")
        self.inner.ftruncate(fd, length)
        inode = self._inode_of(fd)
        if inode is not None:
            with self._lock:
                inode.pending.append(_Resize(length, grow_only=False))

    def fallocate(self, fd: int, offset: int, length: int) -> None:
        self._gate("fallocate")
        self.inner.fallocate(fd, offset, length)
        inode = self._inode_of(fd)
        if inode is not None:
            with self._lock:
                inode.pending.append(_Resize(offset + length, grow_only=True))

    def rename(self, src: Path, dst: Path) -> None:
        self._gate("rename")
        self.inner.rename(src, dst)

    def unlink(self, path: Path) -> None:
        self._gate("unlink")
        self.inner.unlink(path)

    def fsync_dir(self, path: Path) -> None:
        self._gate("fsync_dir")
        self.inner.fsync_dir(path)
        if Path(path).resolve() == self.directory.resolve():
            names = {p.name: p.stat().st_ino for p in self.directory.iterdir() if p.is_file()}
            with self._lock:
                self._durable_names = {n: ino for n, ino in names.items() if ino in self._inodes}

    # -- after the cut ------------------------------------------------------------------------------

    def unsynced_ranges(self) -> dict[str, list[tuple[int, int]]]:
        """Per durable file name, the byte ranges written since its last sync (for tests' assertions)."""
        with self._lock:
            out: dict[str, list[tuple[int, int]]] = {}
            for name, ino in self._durable_names.items():
                spans = [
                    (op.offset, op.offset + len(op.data))
                    for op in self._inodes[ino].pending
                    if isinstance(op, _Write)
                ]
                if spans:
                    out[name] = spans
            return out

    def apply_power_loss(self, rng: random.Random, policy: LossPolicy = LossPolicy.TORN) -> None:
        """Rewrite the directory into what a power cut now could leave. Cuts the power first."""
        self.cut_power()
        with self._lock:
            survivors = {
                name: self._survivor(self._inodes[ino], rng, policy)
                for name, ino in self._durable_names.items()
            }
        if self.directory.is_dir():
            for path in self.directory.iterdir():
                if path.is_file() and path.name not in survivors:
                    path.unlink()  # created or renamed into place without a directory fsync
        for name, content in survivors.items():
            (self.directory / name).write_bytes(bytes(content))

    @staticmethod
    def _survivor(inode: _Inode, rng: random.Random, policy: LossPolicy) -> bytearray:
        content = bytearray(inode.durable)
        if policy == LossPolicy.LOSE:
            return content
        if policy == LossPolicy.TORN:
            for op in inode.pending:
                choice = rng.random()
                if choice < 0.35:
                    continue  # lost
                if choice < 0.7 or isinstance(op, _Resize):
                    _apply(content, op)
                    continue
                # Torn: each sector of the write independently reached the disk or not, in any order;
                # a lost sector past the old end reads as zeros if the size grew anyway.
                start = op.offset
                while start < op.offset + len(op.data):
                    end = min((start // SECTOR + 1) * SECTOR, op.offset + len(op.data))
                    if rng.random() < 0.5:
                        _apply(content, _Write(start, op.data[start - op.offset : end - op.offset]))
                    start = end
            return content
        lowest = min((op.offset for op in inode.pending if isinstance(op, _Write)), default=None)
        for op in inode.pending:
            _apply(content, op)
        if lowest is None or lowest >= len(content):
            return content
        if policy == LossPolicy.TRUNCATE:
            del content[rng.randint(lowest, len(content)) :]
        elif policy == LossPolicy.GARBLE:
            for _ in range(rng.randint(1, 3)):
                start = rng.randint(lowest, len(content) - 1)
                end = min(len(content), start + rng.randint(1, 64))
                content[start:end] = bytes(rng.getrandbits(8) for _ in range(end - start))
        return content
