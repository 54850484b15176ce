"""Reading the log back as records, and the projection it implies: the basis of rebuild and verify."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import apsw

from recovery import parallel
from recovery.progress import NoProgress, Progress, counted
from service import convert, projection
from service.records import Record
from wal import iter_frames, iter_raw_frames

#: Records per transaction when the tail of the log is applied to an existing database: fewer, bigger
#: transactions touch each index page once per batch (10,000 records into a million-row database: 0.6 s
#: CPU in one transaction, 0.78 s in two). Memory stays bounded by one batch of frames.
APPLY_BATCH = 20_000
_SIDE_FILES = ("-wal", "-shm", "-journal")


def log_records(wal_dir: Path, from_lsn: int = 1, to_lsn: int | None = None) -> Iterator[tuple[int, Record]]:
    """(LSN, record) for every record of the log in order; raises WalCorruption on damage."""
    for entry in iter_frames(wal_dir, from_lsn, to_lsn=to_lsn):
        yield entry.lsn, convert.decode(entry.record_type, entry.payload)


def rebuild_from_log(
    wal_dir: Path,
    db_path: Path,
    *,
    to_lsn: int | None = None,
    progress: Progress | None = None,
    parallel_from: int | None = None,
    parts: int | None = None,
) -> int:
    """Build the projection of the log (up to `to_lsn`) into a temporary file beside `db_path` and rename
    it over `db_path` when complete: interrupting it (Ctrl-C, kill) leaves the old database untouched and
    only a temporary file, which the next rebuild removes. Returns the applied LSN.

    A log of at least `parallel_from` records (default `parallel.PARALLEL_FROM`) is rebuilt by several
    processes when this one may use several CPUs (`recovery.parallel`), with the same result; `parts`
    overrides how many (the tests use it to force several)."""
    progress = progress or NoProgress()
    total = to_lsn if to_lsn is not None else _last_lsn(wal_dir)
    parts = parallel.parallel_parts(total, parallel_from, parts)
    if parts > 1 and to_lsn is not None and (_last_lsn(wal_dir) or 0) < to_lsn:
        # The log ends before to_lsn: the sequential rebuild raises that with the message it always has
        # (a part would name its own last LSN instead of to_lsn).
        parts = 1
    progress.start("rebuilding the database from the log", total)
    try:
        if parts > 1 and total is not None:
            try:
                return parallel.rebuild_in_parts(
                    wal_dir, db_path, total, to_lsn=to_lsn, parts=parts, progress=progress
                )
            except parallel.ErrorNotTransferred:
                # The sequential rebuild raises the worker's error as it is (the log is read again).
                progress.start("rebuilding the database from the log", total)
        frames = counted(iter_raw_frames(wal_dir, to_lsn=to_lsn), progress)
        return projection.rebuild_from_frames(db_path, frames)
    finally:
        progress.finish()


def apply_tail(
    conn: apsw.Connection, wal_dir: Path, to_lsn: int, *, progress: Progress | None = None
) -> tuple[int, int]:
    """Apply the log's records after the database's applied LSN up to `to_lsn`, in transactions of
    APPLY_BATCH records (each one also advances applied_lsn, so an interruption loses nothing). Returns
    (records applied, applied LSN)."""
    progress = progress or NoProgress()
    start = projection.applied_lsn(conn)
    if start >= to_lsn:
        return 0, start
    progress.start("applying the log to the database", to_lsn - start)
    applied = start
    try:
        # Undecoded frames, as the live applier takes them: joins' rows are read from their payloads.
        frames = iter_frames(wal_dir, start + 1, to_lsn=to_lsn)
        while batch := list(itertools.islice(frames, APPLY_BATCH)):
            applied = projection.apply_frames(conn, batch)
            progress.advance(len(batch))
    finally:
        progress.finish()
    return applied - start, applied


def _last_lsn(wal_dir: Path) -> int | None:
    from wal import list_segments

    segments = list_segments(wal_dir)
    return segments[-1].last_lsn if segments and segments[-1].last_lsn is not None else None


def projection_digest_of_log(wal_dir: Path, scratch: Path, to_lsn: int | None = None) -> tuple[int, str]:
    """Rebuild the projection of the log into `scratch` (a file path) and return (applied LSN, digest):
    what the live database must equal."""
    applied = projection.rebuild_from_frames(scratch, iter_raw_frames(wal_dir, to_lsn=to_lsn))
    conn = projection.open_database(scratch, readonly=True)
    try:
        return applied, projection.projection_digest(conn)
    finally:
        conn.close()


def database_digest(db_path: Path) -> tuple[int, str]:
    conn = projection.open_database(db_path, readonly=True)
    try:
        return projection.applied_lsn(conn), projection.projection_digest(conn)
    finally:
        conn.close()


def remove_database(db_path: Path) -> None:
    """Delete a database file and its side files (a scratch copy; never the live one while it is open)."""
    for name in (db_path.name, *(db_path.name + suffix for suffix in _SIDE_FILES)):
        (db_path.parent / name).unlink(missing_ok=True)


def set_aside(db_path: Path, suffix: str) -> Path | None:
    """Rename a database that cannot be used (with its side files) to `<name>.<suffix>`, so a rebuild never
    destroys a file someone may still want to look at. Returns the new path, None if there was no file."""
    if not db_path.exists():
        for side in _SIDE_FILES:
            Path(str(db_path) + side).unlink(missing_ok=True)
        return None
    target = db_path.with_name(f"{db_path.name}.{suffix}")
    n = 1
    while target.exists():
        n += 1
        target = db_path.with_name(f"{db_path.name}.{suffix}-{n}")
    for side in _SIDE_FILES:
        source = Path(str(db_path) + side)
        if source.exists():
            os.replace(source, Path(str(target) + side))
    os.replace(db_path, target)
    return target
