"""A rebuild in parts: the log's LSN range cut into consecutive parts, each loaded on its own (in its own
process, see `recovery.parallel`), then merged into the database being built.

Why the merged result equals the live applier's, which applied every record seeing exactly the records
before it:

- the joins of all parts are copied in first (one `INSERT ... SELECT` per part, in C), then every other
  record is applied in LSN order, as `rebuild_from_frames` would apply it;
- those other records touch the joins table only when they are erasures, and an erasure redacts only
  joins with a lower LSN (`apply._apply_erased`): the joins after it, present here but not in the live
  applier at that moment, are left alone, exactly as they would be;
- leaves, staff IB profiles, invite snapshots and erasures never read joins, and among themselves they
  keep their log order; members and join counts are derived at the end (as in `rebuild_from_frames`).

A part is loaded in a file of its own holding only the joins table (the schema's definition, no index:
the merged table's indexes are built once, after the copy). Its other records are decoded while it
loads, so a bad record raises there, in log order, and come back with its result.
"""

from __future__ import annotations

import functools
import os
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import apsw
import attrs

from service.projection.apply import JoinCounts, add_join_counts, apply_entries, set_applied_lsn
from service.projection.frames import load_frames, load_in_transactions, no_cyclic_gc
from service.projection.schema import migrate
from service.records import Record


@attrs.frozen
class PartResult:
    """What loading a part leaves to its merge: its last LSN, its other records (in LSN order, decoded)
    and its joins per (guild, kind)."""

    applied: int
    deferred: list[tuple[int, Record]]
    counts: JoinCounts


@functools.cache
def joins_table_sql() -> str:
    """The schema's own CREATE TABLE of joins (so a part's rows copy column for column)."""
    conn = apsw.Connection(":memory:")
    try:
        migrate(conn)
        return str(conn.execute("SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = 'joins'").get)
    finally:
        conn.close()


def load_part(
    conn: apsw.Connection,
    frames: Iterable[Sequence[Any]],
    first_lsn: int,
    *,
    batch_size: int = 50_000,
    report: Callable[[int], None] | None = None,
) -> PartResult:
    """Insert the joins of `frames` (a part of the log starting at `first_lsn`, gap-free) into `conn`'s
    joins table, in transactions of `batch_size` frames, and keep the other records for the merge.
    `report` is told how many frames each transaction took."""
    counts: JoinCounts = Counter()
    deferred: list[tuple[int, Record]] = []
    applied = first_lsn - 1

    def load_chunk(chunk: list[Sequence[Any]]) -> None:
        nonlocal applied
        applied = load_frames(conn, chunk, applied, counts, deferred=deferred)

    with no_cyclic_gc():
        load_in_transactions(conn, frames, batch_size, load_chunk, report=report)
    return PartResult(applied, deferred, counts)


def build_part(
    path: Path,
    frames: Iterable[Sequence[Any]],
    first_lsn: int,
    *,
    report: Callable[[int], None] | None = None,
) -> PartResult:
    """`load_part` into a fresh file at `path` holding only an index-less joins table. Nothing is synced:
    the file lives only until the merge copies it, and a crash leaves a stray file the next rebuild
    removes."""
    path.unlink(missing_ok=True)
    conn = apsw.Connection(os.fspath(path))
    try:
        conn.pragma("journal_mode", "off")
        conn.pragma("synchronous", "off")
        conn.pragma("locking_mode", "exclusive")
        conn.execute(joins_table_sql())
        return load_part(conn, frames, first_lsn, report=report)
    finally:
        conn.close()


def merge_parts(
    conn: apsw.Connection,
    first: PartResult,
    parts: Sequence[tuple[Path, PartResult]],
    *,
    restore_indexes: Callable[[], None],
) -> int:
    """Merge into `conn` (whose joins already hold the first part's, `first`) the parts loaded in files,
    in LSN order; then build the indexes and apply every other record in LSN order. Returns the applied
    LSN."""
    for path, _result in parts:
        conn.execute("ATTACH DATABASE ? AS part", (os.fspath(path),))
        try:
            with conn:
                conn.execute("INSERT INTO main.joins SELECT * FROM part.joins")
        finally:
            conn.execute("DETACH DATABASE part")
    # The erasures' updates look joins up by user and by staff: the indexes first.
    restore_indexes()
    results = [first, *(result for _path, result in parts)]
    counts: JoinCounts = Counter()
    for result in results:
        counts.update(result.counts)
    applied = results[-1].applied
    with conn:
        apply_entries(
            conn, [entry for result in results for entry in result.deferred], maintain_members=False
        )
        add_join_counts(conn, counts)
        set_applied_lsn(conn, applied)
    return applied
