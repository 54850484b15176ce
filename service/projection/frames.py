"""Applying the log's frames (type code and payload, not yet decoded records) in a rebuild.

Joins are nearly every record of a log: their rows are read from the payload text (`join_rows`) and
inserted with one executemany per run of consecutive joins. Every other record is decoded by the one
converter and applied by `apply_entries`, after the joins before it are inserted, so each statement sees
the effects of all earlier records, exactly as in the live applier.
"""

from __future__ import annotations

import operator
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import apsw

from service import convert
from service.projection.apply import _INSERT_JOIN, LsnGapError, _join_row, apply_entries
from service.projection.join_rows import join_row
from service.records import RECORD_TYPES, JoinRecorded, Record

_JOIN = RECORD_TYPES[JoinRecorded]
# Where `_join_row` puts the guild and the kind, for join_counts.
_guild_and_kind = operator.itemgetter(6, 11)


def load_frames(
    conn: apsw.Connection,
    frames: Sequence[Sequence[Any]],
    applied: int,
    counts: Counter[tuple[str, str]],
    *,
    before_erasure: Callable[[], None] | None = None,
    deferred: list[tuple[int, Record]] | None = None,
) -> int:
    """Apply `frames` ((lsn, record_type, payload, ...), in LSN order) after the applied LSN `applied`,
    inside the caller's transaction, without maintaining members (the rebuild derives them at the end).
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
        _insert_joins(conn, rows, counts)
        apply_entries(conn, [(lsn, record)], maintain_members=False, before_erasure=before_erasure)
    _insert_joins(conn, rows, counts)
    return applied


def _decoded_join_row(lsn: int, payload: bytes) -> tuple[Any, ...]:
    """The generic path: the converter's record (or its error), then the live applier's row."""
    record = convert.decode(_JOIN, payload)
    assert isinstance(record, JoinRecorded)
    return _join_row(lsn, record)


def _insert_joins(
    conn: apsw.Connection, rows: list[tuple[Any, ...]], counts: Counter[tuple[str, str]]
) -> None:
    if rows:
        conn.executemany(_INSERT_JOIN, rows)
        counts.update(map(_guild_and_kind, rows))
        rows.clear()
