"""What can go wrong with the log, as types a caller can tell apart.

`WalCorruption` means an acknowledged part of the log is damaged: the process must not start, because
starting would silently drop or overwrite records. `WalWriteError` means one batch could not be written
(disk full, I/O error) and was not acknowledged; the writer carries on. `WalFsyncError` is fatal: after a
failed fsync the kernel may already have dropped the dirty pages, so retrying could report durability
that does not exist (the PostgreSQL "fsyncgate" lesson); the writer stops and restart recovery decides.
"""

from __future__ import annotations

RESTORE_HINT = (
    "Do not edit or delete segment files by hand. Restore the log from backup with "
    "`invite-ledger restore --from TARGET`, then start again."
)


class WalError(Exception):
    """Base class of every error the log raises."""


class WalCorruption(WalError):
    """A checksum or structure failure that is not a torn tail: an acknowledged record may be damaged.

    Carries the segment file name, the byte offset inside it, and the LSN involved (the LSN of the damaged
    frame when its header could be read, else the LSN expected there), so an operator can find it.
    """

    def __init__(self, segment: str, offset: int, lsn: int | None, reason: str) -> None:
        self.segment = segment
        self.offset = offset
        self.lsn = lsn
        self.reason = reason
        where = f"segment {segment} at byte offset {offset}"
        what = f"LSN {lsn}" if lsn is not None else "unknown LSN"
        super().__init__(f"WAL corruption in {where} ({what}): {reason}. Refusing to start. {RESTORE_HINT}")

    def __reduce__(self) -> tuple[type[WalCorruption], tuple[str, int, int | None, str]]:
        return (type(self), (self.segment, self.offset, self.lsn, self.reason))


class WalFormatError(WalError):
    """A segment written by an unknown format version or not a segment at all; refuse rather than guess."""


class WalWriteError(WalError):
    """A batch could not be written (ENOSPC, EIO, ...). Its appends were not acknowledged and are not in
    the log; the partial bytes were cut off and the writer accepts new appends."""

    def __init__(self, message: str, errno: int | None = None) -> None:
        self.errno = errno
        super().__init__(message)

    def __reduce__(self) -> tuple[type[WalWriteError], tuple[str, int | None]]:
        return (type(self), (str(self), self.errno))


class WalFatalError(WalError):
    """The writer can no longer vouch for the state of its files and stops; restart recovery decides."""


class WalFsyncError(WalFatalError):
    """fsync or fdatasync failed. Fatal: the writer stops and never retries the sync."""


class WalClosedError(WalError):
    """The writer is not running (stopped, failed, or shutting down); the append was not taken."""
