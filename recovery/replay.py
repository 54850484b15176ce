"""Reading the log back as records, and the projection it implies: the basis of rebuild and verify."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from service import convert, projection
from service.records import Record
from wal import iter_frames


def log_records(wal_dir: Path, from_lsn: int = 1, to_lsn: int | None = None) -> Iterator[tuple[int, Record]]:
    """(LSN, record) for every record of the log in order; raises WalCorruption on damage."""
    for entry in iter_frames(wal_dir, from_lsn, to_lsn=to_lsn):
        yield entry.lsn, convert.decode(entry.record_type, entry.payload)


def projection_digest_of_log(wal_dir: Path, scratch: Path, to_lsn: int | None = None) -> tuple[int, str]:
    """Rebuild the projection of the log into `scratch` (a file path) and return (applied LSN, digest):
    what the live database must equal."""
    applied = projection.rebuild_database(scratch, log_records(wal_dir, to_lsn=to_lsn))
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
