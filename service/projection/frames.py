"""Applying the log's frames (type code and payload, not yet decoded records): the rebuild and the live
applier.

Joins are nearly every record of a log: their rows are read from the payload text (`join_rows`) and
inserted with one executemany per run of consecutive joins. Every other record is decoded by the one
converter and applied by `apply_entries`, after the joins before it are inserted, so each statement sees
the effects of all earlier records, exactly as `apply_batch` on decoded records would.

`apply_frames` is the live applier's transaction: the same as `apply_batch` (idempotent by LSN, members
maintained row by row, join_counts and applied_lsn in the same transaction), from frames, so that the
decoding runs in the applier's worker thread and never on the event loop.
"""

from __future__ import annotations

import gc
import itertools
import operator
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import apsw

from service import convert
from service.projection.apply import (
    _INSERT_JOIN,
    _UPSERT_MEMBER_JOINED,
    JoinCounts,
    LsnGapError,
    _join_row,
    add_join_counts,
    applied_lsn,
    apply_entries,
    set_applied_lsn,
)
from service.projection.join_rows import join_row
from service.projection.json_batch import insert_joins, rows_json
from service.projection.transaction import write_transaction
from service.records import RECORD_TYPES, JoinRecorded, Record

_JOIN = RECORD_TYPES[JoinRecorded]
# Where `_join_row` puts the guild (in its stored form, see `ids`) and the kind, for join_counts.
_guild_and_kind = operator.itemgetter(6, 11)
# ... and the members upsert's parameters (guild, user, lsn), taken from the row in C.
_member_of = operator.itemgetter(6, 8, 0)
# A wal.LogEntry (or wal.Frame) as the (lsn, record_type, payload) that `load_frames` reads.
_frame_tuple = operator.attrgetter("lsn", "record_type", "payload")


@contextmanager
def no_cyclic_gc() -> Iterator[None]:
    """The cyclic garbage collector paused: loading a million records allocates tens of millions of
    tuples, strings and structs, none of which form cycles, and the collector would walk them hundreds of
    times for nothing (measured: 0.5-0.7 µs of a load's ~7 µs per join)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


#: Frames read and loaded at a time inside a rebuild's transaction: a chunk's payloads and rows are still in
#: the CPU's caches when SQLite reads them. Loading 150,000 joins (min of 5 runs, alternated in one
#: process): 6.3-6.7 µs per join with a 50,000-frame transaction's rows all built before one insert,
#: 5.4-6.2 in chunks of 256 to 2,048 (512: 5.4; with a second process loading alongside, 5.6-6.1
#: against 6.7-7.5).
LOAD_CHUNK = 512


def load_in_transactions(
    conn: apsw.Connection,
    frames: Iterable[Sequence[Any]],
    batch_size: int,
    load_chunk: Callable[[list[Sequence[Any]]], None],
    *,
    before_commit: Callable[[], None] = lambda: None,
    report: Callable[[int], None] | None = None,
) -> None:
    """Pass `frames` to `load_chunk` in chunks of at most LOAD_CHUNK, in transactions of `batch_size`
    frames (the last may hold fewer); `before_commit` runs at the end of each transaction that loaded
    frames, and `report` is told, after each commit, how many frames it held."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    iterator = iter(frames)
    taken = batch_size
    while taken == batch_size:
        taken = 0
        with conn:
            while taken < batch_size:
                chunk = list(itertools.islice(iterator, min(LOAD_CHUNK, batch_size - taken)))
                if not chunk:
                    break
                load_chunk(chunk)
                taken += len(chunk)
            if taken:
                before_commit()
        if report is not None and taken:
            report(taken)


def load_frames(
    conn: apsw.Connection,
    frames: Sequence[Sequence[Any]],
    applied: int,
    counts: JoinCounts,
    *,
    before_erasure: Callable[[], None] | None = None,
    deferred: list[tuple[int, Record]] | None = None,
    maintain_members: bool = False,
) -> int:
    """Apply `frames` ((lsn, record_type, payload, ...), in LSN order) after the applied LSN `applied`,
    inside the caller's transaction, without maintaining members (the rebuild derives them at the end)
    unless `maintain_members` (the live applier's way, row by row as `apply_entries` does).
    Frames at or below `applied` are skipped; a gap raises LsnGapError. Joins are added to `counts`
    (guild, kind), for the caller to write once. Returns the new applied LSN.

    With `deferred`, the other records are decoded (so a bad one raises here, in log order) and appended
    to it instead of applied: a parallel rebuild (`parts`) applies them once every join is in."""
    rows: list[tuple[Any, ...]] = []
    for frame in frames:
        lsn = frame[0]
        if lsn != applied + 1:
            if lsn < 1:
                raise ValueError(f"LSN {lsn}: LSNs start at 1")
            if lsn <= applied:
                continue
            raise LsnGapError(applied + 1, lsn)
        applied = lsn
        if frame[1] == _JOIN:
            payload = frame[2]
            rows.append(join_row(lsn, payload) or _decoded_join_row(lsn, payload))
            continue
        record = convert.decode(frame[1], frame[2])
        if deferred is not None:
            deferred.append((lsn, record))
            continue
        _insert_joins(conn, rows, counts, maintain_members)
        apply_entries(conn, [(lsn, record)], maintain_members=maintain_members, before_erasure=before_erasure)
    _insert_joins(conn, rows, counts, maintain_members)
    return applied


def apply_frames(conn: apsw.Connection, frames: Sequence[Any]) -> int:
    """`apply_batch` for frames (objects with lsn, record_type and payload, such as `wal.LogEntry`, in
    LSN order): one transaction holds the rows, the members, join_counts and the new applied_lsn. Frames
    at or below the applied LSN are skipped; a gap raises LsnGapError and, like a record that does not
    decode, rolls the whole batch back. Returns the applied LSN after the batch."""
    with write_transaction(conn):  # its COMMIT lets the event loop run meanwhile
        before = applied_lsn(conn)
        counts: JoinCounts = Counter()
        applied = load_frames(conn, list(map(_frame_tuple, frames)), before, counts, maintain_members=True)
        if applied != before:
            add_join_counts(conn, counts)
            set_applied_lsn(conn, applied)
    return applied


def _decoded_join_row(lsn: int, payload: bytes) -> tuple[Any, ...]:
    """The generic path: the converter's record (or its error), then the live applier's row."""
    record = convert.decode(_JOIN, payload)
    assert isinstance(record, JoinRecorded)
    return _join_row(lsn, record)


def _insert_joins(
    conn: apsw.Connection,
    rows: list[tuple[Any, ...]],
    counts: JoinCounts,
    maintain_members: bool = False,
) -> None:
    if rows:
        # The live applier (the one maintaining members) shares the GIL with a busy event loop: one bind
        # and one step for the run saves it the waits (see json_batch). A rebuild has its process to
        # itself, and there binding row by row costs less than JSON (a 1M-record rebuild: 104k records/s
        # through JSON, 157-168k binding rows).
        text = rows_json(rows) if maintain_members else None
        if text is not None:
            insert_joins(conn, text, members=maintain_members)
        else:
            conn.executemany(_INSERT_JOIN, rows)
            if maintain_members:  # after the run's joins, before the next record: apply_entries' order
                conn.executemany(_UPSERT_MEMBER_JOINED, list(map(_member_of, rows)))
        counts.update(map(_guild_and_kind, rows))
        rows.clear()
