"""The live applier's frames path (`apply_frames`) builds exactly the database `apply_batch` builds from the
same records decoded: every table row for row, whatever the batch splits, replays, gaps and odd payloads.

The applier now hands undecoded WAL entries to its worker thread; these tests pin that nothing of the
projection changed with it (the stateful model test in test_projection_model drives it too).
"""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime
from pathlib import Path

import apsw
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service import convert
from service.projection import LsnGapError, applied_lsn, apply_batch, apply_frames, dump_tables, open_database
from service.projection import frames as frames_module
from service.projection.frames import load_in_transactions
from service.records import (
    AttributionKind,
    InviteSnapshotTaken,
    InviteState,
    JoinFlag,
    JoinRecorded,
    MemberLeft,
    Record,
    StaffIbRemoved,
    StaffIbSet,
    UserErased,
)
from tests.service.test_projection_model import records
from wal import LogEntry

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def entry(lsn: int, record_type: int, payload: bytes) -> LogEntry:
    return LogEntry(lsn, record_type, payload, segment="00000000000000000001.wal", offset=0)


def frames_of(log: list[tuple[int, Record]]) -> list[LogEntry]:
    return [entry(lsn, *convert.encode(record)) for lsn, record in log]


def decoded(frames: list[LogEntry]) -> list[tuple[int, Record]]:
    """What the applier did before: every frame decoded by the converter on the event loop."""
    return [(f.lsn, convert.decode(f.record_type, f.payload)) for f in frames]


def tables(conn: apsw.Connection) -> list[tuple[str, tuple[object, ...]]]:
    return list(dump_tables(conn))


def every_record_type() -> list[tuple[int, Record]]:
    """A log with each record type, rejoins, an erasure of a member and of a credited staff member."""
    join = JoinRecorded
    log: list[Record] = [
        StaffIbSet(T0, "g", "s1", "Travis#1", "https://broker/ref/t", "T1", "admin"),
        InviteSnapshotTaken(
            T0,
            "g",
            "Guild ✨",
            (InviteState("abc", 3, 10, "s1", "Travis#1", T0, "c1", T0), InviteState("def", 0)),
            "vanity",
            7,
        ),
        join(T0, "g", "Guild ✨", "u1", "ann", "Ann \"A\"\n", AttributionKind.EXACT, "abc", "s1", "Travis#1",
             3, 4, (), (JoinFlag.YOUNG_ACCOUNT,), T0, T0),
        join(T0, "g", "Guild ✨", "u2", "bob", "Bob", AttributionKind.AMBIGUOUS, None, None, None, None,
             None, ("abc", "def"), ()),
        MemberLeft(T0, "g", "u1"),
        join(T0, "g", "Guild ✨", "u1", "ann", "Ann", AttributionKind.EXACT, "abc", "s1", "Travis#1", 4, 5,
             (), (JoinFlag.REJOIN, JoinFlag.SELF_INVITE)),
        MemberLeft(T0, "g", "never-seen"),
        UserErased(T0, "g", "u2", "u2"),
        UserErased(T0, "g", "s1", "s1"),
        StaffIbRemoved(T0, "g", "s1", "admin"),
        join(T0, "h", "Other", "u2", "bob", "Bob", AttributionKind.VANITY),
        join(T0, "g", "Guild ✨", "u2", "bob", "Bob", AttributionKind.UNKNOWN, flags=(JoinFlag.BOT,)),
        StaffIbSet(T0, "g", "s2", "Sam#2", "https://broker/ref/s", "S2", "admin"),
    ]  # fmt: skip
    return list(enumerate(log, start=1))


def test_a_log_with_every_record_type_gives_the_same_rows_as_apply_batch(tmp_path: Path):
    frames = frames_of(every_record_type())
    old, new = open_database(tmp_path / "old.sqlite3"), open_database(tmp_path / "new.sqlite3")
    for start in range(0, len(frames), 5):
        batch = frames[start : start + 5]
        assert apply_batch(old, decoded(batch)) == apply_frames(new, batch) == batch[-1].lsn
    assert tables(new) == tables(old)
    assert {table for table, _ in tables(new)} >= {
        "erasures", "invite_snapshots", "join_counts", "joins", "leaves", "members", "meta",
        "snapshot_invites", "staff_ib",
    }  # fmt: skip


@given(log=st.lists(records, min_size=1, max_size=30), cuts=st.lists(st.integers(1, 30), max_size=6))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_log_in_any_batches_gives_the_same_rows_as_apply_batch(log: list[Record], cuts: list[int]):
    frames = frames_of(list(enumerate(log, start=1)))
    bounds = sorted({0, len(frames), *(c for c in cuts if c < len(frames))})
    old, new = open_database(":memory:"), open_database(":memory:")
    try:
        for first, last in itertools.pairwise(bounds):
            # Each batch also replays the one before it: skipped by LSN on both paths.
            batch = frames[max(0, first - 2) : last]
            assert apply_frames(new, batch) == apply_batch(old, decoded(batch)) == last
            assert tables(new) == tables(old)
    finally:
        old.close()
        new.close()


def test_replays_are_skipped_and_a_gap_applies_nothing(tmp_path: Path):
    frames = frames_of(every_record_type())
    conn = open_database(tmp_path / "db.sqlite3")
    assert apply_frames(conn, frames[:4]) == 4
    before = tables(conn)
    assert apply_frames(conn, frames[:4]) == 4
    assert apply_frames(conn, []) == 4
    assert tables(conn) == before
    with pytest.raises(LsnGapError) as raised:
        apply_frames(conn, [frames[4], frames[6]])  # the gap inside the batch also rejects its good start
    assert (raised.value.expected, raised.value.got) == (6, 7)
    assert tables(conn) == before
    with pytest.raises(ValueError, match="start at 1"):
        apply_frames(conn, [entry(0, *convert.encode(every_record_type()[0][1]))])


def test_a_join_payload_the_fast_reader_refuses_takes_the_converters_way(tmp_path: Path):
    """A payload missing optional keys (an older writer's shape) gets the converter's defaults, as before;
    one the converter refuses raises and rolls the batch back."""
    record = every_record_type()[2][1]
    full = json.loads(convert.encode(record)[1])
    short = {k: v for k, v in full.items() if k not in ("decided_at", "flags")}
    frames = [entry(1, 1, json.dumps(short).encode()), entry(2, 1, json.dumps(full, indent=1).encode())]
    old, new = open_database(tmp_path / "old.sqlite3"), open_database(tmp_path / "new.sqlite3")
    assert apply_frames(new, frames) == apply_batch(old, decoded(frames)) == 2
    assert tables(new) == tables(old)
    before = tables(new)
    bad = [entry(3, *convert.encode(record)), entry(4, 1, b'{"timestamp": "yesterday"}')]
    with pytest.raises(Exception) as raised:
        apply_frames(new, bad)
    with pytest.raises(type(raised.value)):
        decoded(bad)
    assert tables(new) == before
    assert applied_lsn(new) == 2


def test_frames_are_loaded_in_chunks_inside_transactions_of_the_batch_size(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(frames_module, "LOAD_CHUNK", 3)
    conn = apsw.Connection(":memory:")
    conn.execute("CREATE TABLE t (n INTEGER)")
    chunks: list[list[int]] = []
    commits: list[int] = []
    reports: list[int] = []

    def load_chunk(chunk: list) -> None:
        assert conn.in_transaction
        chunks.append([frame[0] for frame in chunk])
        conn.executemany("INSERT INTO t VALUES (?)", [(frame[0],) for frame in chunk])
        if frame_error in [frame[0] for frame in chunk]:
            raise ValueError("bad frame")

    def before_commit() -> None:
        commits.append(conn.execute("SELECT count(*) FROM t").get)

    frame_error = 0
    load_in_transactions(
        conn, [(n,) for n in range(1, 21)], 7, load_chunk, before_commit=before_commit, report=reports.append
    )
    assert chunks == [[1, 2, 3], [4, 5, 6], [7], [8, 9, 10], [11, 12, 13], [14], [15, 16, 17], [18, 19, 20]]
    assert commits == [7, 14, 20] and reports == [7, 7, 6]
    assert conn.execute("SELECT count(*) FROM t").get == 20

    # An error rolls back its own transaction only; the ones committed before it stay.
    conn.execute("DELETE FROM t")
    chunks.clear()
    frame_error = 12
    with pytest.raises(ValueError, match="bad frame"):
        load_in_transactions(conn, [(n,) for n in range(1, 21)], 7, load_chunk)
    assert conn.execute("SELECT max(n) FROM t").get == 7
    assert not conn.in_transaction
