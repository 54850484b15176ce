"""The data directory's lock: one process at a time may change a data directory.

The running service holds it from start-up recovery until it exits; `rebuild` and `restore` take it and
refuse while anyone else holds it. `checkpoint`, `verify` and `export` never take it: they only read.

It is an `fcntl.flock` on `<data_dir>/invite-ledger.lock`, so the kernel drops it when the holder dies
(kill -9 and power loss included): a stale lock cannot exist, and nobody ever has to delete the file. The
file's content (pid, purpose, since) only names the holder in messages. Within one process the lock is
re-entrant (counted), so `recover()` can take it while the `run` command that called it already holds it,
from any thread.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

import attrs

LOCK_NAME = "invite-ledger.lock"
#: A momentary holder (a probe by `checkpoint`, a second start racing the first) is waited out this long.
DEFAULT_WAIT_S = 0.5

_registry_lock = threading.Lock()
_held: dict[Path, tuple[int, int]] = {}  # resolved lock path -> (fd, count) held by this process


@attrs.frozen
class LockHolder:
    pid: int | None
    purpose: str
    since: str

    def describe(self) -> str:
        who = f"pid {self.pid}" if self.pid is not None else "another process"
        return f"{self.purpose} ({who}, since {self.since})"


class DataDirBusy(Exception):
    """Another process holds the data directory (the service is running, or a rebuild or restore)."""

    def __init__(self, data_dir: Path, holder: LockHolder | None, wanted: str) -> None:
        self.data_dir = data_dir
        self.holder = holder
        held_by = holder.describe() if holder is not None else "another process"
        super().__init__(
            f"{data_dir} is in use by {held_by}; {wanted} needs it to itself. "
            "Stop the service first (systemctl stop invite-ledger, or Ctrl-C), then try again."
        )


def lock_path(data_dir: Path) -> Path:
    return Path(data_dir) / LOCK_NAME


def _read_holder(path: Path) -> LockHolder | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8") or "null")
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    pid = data.get("pid")
    return LockHolder(
        pid if isinstance(pid, int) else None, str(data.get("purpose", "?")), str(data.get("since", "?"))
    )


def holder(data_dir: Path) -> LockHolder | None:
    """Who holds the data directory now, or None when nobody does. Never takes the lock: a process that
    holds it is found by a shared-lock probe that fails, so a starting service is never refused."""
    path = lock_path(data_dir)
    if not path.exists():
        return None
    with _registry_lock:
        if path.resolve() in _held:
            return _read_holder(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return _read_holder(path) or LockHolder(None, "?", "?")
            raise
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


class DataDirLock:
    """`with DataDirLock(data_dir, "rebuild"):` holds the data directory; raises DataDirBusy if taken."""

    def __init__(self, data_dir: Path | str, purpose: str, *, wait_s: float = DEFAULT_WAIT_S) -> None:
        self.data_dir = Path(data_dir)
        self.purpose = purpose
        self.wait_s = wait_s
        self._key: Path | None = None

    def acquire(self) -> DataDirLock:
        if self._key is not None:
            raise RuntimeError("this DataDirLock is already acquired")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        path = lock_path(self.data_dir)
        key = path.resolve()
        with _registry_lock:
            if key in _held:
                fd, count = _held[key]
                _held[key] = (fd, count + 1)
                self._key = key
                return self
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                self._flock(fd, path)
                # Name the holder for other processes' messages (only after the lock is ours).
                os.ftruncate(fd, 0)
                since = datetime.now(UTC).isoformat(timespec="seconds")
                os.pwrite(
                    fd, json.dumps({"pid": os.getpid(), "purpose": self.purpose, "since": since}).encode(), 0
                )
            except BaseException:
                os.close(fd)
                raise
            _held[key] = (fd, 1)
            self._key = key
        return self

    def _flock(self, fd: int, path: Path) -> None:
        # Bounded wait: a `checkpoint` probe holds a shared lock for microseconds.
        deadline = time.monotonic() + self.wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise
                if time.monotonic() >= deadline:
                    raise DataDirBusy(self.data_dir, _read_holder(path), self.purpose) from None
                time.sleep(0.02)

    def release(self) -> None:
        key, self._key = self._key, None
        if key is None:
            return
        with _registry_lock:
            fd, count = _held[key]
            if count > 1:
                _held[key] = (fd, count - 1)
                return
            del _held[key]
            # Leave the file (deleting it would race with a process about to lock it); unlock and close.
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    @property
    def held(self) -> bool:
        return self._key is not None

    def __enter__(self) -> DataDirLock:
        return self.acquire()

    def __exit__(
        self, _type: type[BaseException] | None, _value: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.release()


def hold_data_dir(data_dir: Path | str, purpose: str, *, wait_s: float = DEFAULT_WAIT_S) -> DataDirLock:
    """The lock, acquired: use as `with hold_data_dir(config.data_dir, "service"):`."""
    return DataDirLock(data_dir, purpose, wait_s=wait_s).acquire()
