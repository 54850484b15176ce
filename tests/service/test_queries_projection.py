"""The queries staff commands need, on a read connection beside the writer."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.projection import (
    ERASED,
    InviteComparison,
    JoinCursor,
    StaffProfile,
    applied_lsn,
    apply_batch,
    invite_comparison,
    join_logs,
    lookup_user,
    open_database,
    open_read_connection,
    staff_counts,
    staff_profile,
    stats,
)
from service.records import (
    AttributionKind,
    InviteSnapshotTaken,
    InviteState,
    JoinRecorded,
    MemberLeft,
    StaffIbSet,
    UserErased,
)
from tests.service.test_projection import T0, join, numbered


@pytest.fixture
def ledger(tmp_path: Path):
    """(writer, reader) on one database file, as the applier and the query actor hold them."""
    writer = open_database(tmp_path / "projection.sqlite3")
    reader = open_read_connection(tmp_path / "projection.sqlite3")
    yield writer, reader
    reader.close()
    writer.close()


def test_lookup_shows_the_latest_join_history_and_the_staff_members_current_ib(ledger):
    writer, reader = ledger
    apply_batch(
        writer,
        numbered(
            StaffIbSet(T0, "g", "s1", "Travis#1", "https://broker/ref/old", "OLD1", "admin"),
            join("u1", 10, code="abc", staff="s2"),
            MemberLeft(T0 + timedelta(seconds=20), "g", "u1"),
            join("u1", 30, code="xyz", staff="s1", uses_before=5, uses_after=6),
            join("u1", 40, guild="other"),  # another guild's history is not this one's
        ),
    )
    result = lookup_user(reader, "g", "u1", segment_of=lambda lsn: f"{lsn // 4 * 4:020d}.wal")
    assert result.latest_join is not None
    assert (result.latest_join.lsn, result.latest_join.invite_code, result.latest_join.staff_id) == (
        4,
        "xyz",
        "s1",
    )
    assert result.latest_join.timestamp == T0 + timedelta(seconds=30)
    assert [(e.lsn, e.event) for e in result.history] == [(2, "join"), (3, "leave"), (4, "join")]
    assert result.member is not None and result.member.in_guild and result.member.join_count == 2
    assert result.staff_profile == StaffProfile(
        "g", "s1", "Travis#1", "https://broker/ref/old", "OLD1", "admin", T0, 1
    )
    assert (result.proof_lsn, result.proof_segment) == (4, "00000000000000000004.wal")
    assert result.applied_lsn == 5

    # The staff member changes their link: the lookup shows it as it is now, the proof stays the join.
    apply_batch(
        writer,
        numbered(StaffIbSet(T0, "g", "s1", "Travis#1", "https://broker/ref/new", "NEW2", "s1"), first=6),
    )
    again = lookup_user(reader, "g", "u1")
    assert again.staff_profile is not None
    assert (again.staff_profile.ib_link, again.staff_profile.ib_code) == ("https://broker/ref/new", "NEW2")
    assert (again.proof_lsn, again.proof_segment) == (4, None)


def test_lookup_of_an_uncredited_join_names_no_staff(ledger):
    writer, reader = ledger
    apply_batch(
        writer,
        numbered(
            StaffIbSet(T0, "g", "s1", "Travis#1", "https://broker/ref/t", "T1", "admin"),
            join("u1", 1, code="abc", staff="s1"),
            join("u1", 2, code=None, staff=None, kind=AttributionKind.AMBIGUOUS, candidates=("abc", "def")),
        ),
    )
    result = lookup_user(reader, "g", "u1")
    assert result.latest_join is not None and result.latest_join.kind is AttributionKind.AMBIGUOUS
    assert result.latest_join.candidates == ("abc", "def")
    assert result.staff_profile is None  # never credit on a guess, not even from an earlier join


def test_lookup_of_an_unknown_and_of_an_erased_user(ledger):
    writer, reader = ledger
    nobody = lookup_user(reader, "g", "nobody")
    assert (nobody.latest_join, nobody.history, nobody.member, nobody.proof_lsn) == (None, (), None, None)
    apply_batch(writer, numbered(join("u1"), MemberLeft(T0, "g", "u1"), UserErased(T0, "g", "u1", "u1")))
    erased = lookup_user(reader, "g", "u1")
    assert (erased.latest_join, erased.history, erased.member) == (None, (), None)
    assert [(e.lsn, e.user_id, e.joins_redacted) for e in erased.erasures] == [(3, "u1", 1)]
    (page_entry,) = join_logs(reader, "g").entries
    assert (page_entry.user_id, page_entry.username, page_entry.erased) == (None, ERASED, True)


def _many_joins(n: int) -> list[JoinRecorded]:
    # Several joins share a timestamp, so the LSN has to break ties in the cursor.
    return [
        join(f"u{i % 4}", i // 3, code=("abc", "def")[i % 2], staff=("s1", "s2", None)[i % 3])
        for i in range(n)
    ]


def test_join_logs_pages_newest_first_without_repeats_or_gaps(ledger):
    writer, reader = ledger
    apply_batch(writer, numbered(*_many_joins(20)))
    seen = []
    cursor = None
    while True:
        page = join_logs(reader, "g", limit=6, before=cursor)
        seen += [(e.timestamp, e.lsn) for e in page.entries]
        if page.next_cursor is None:
            break
        assert page.next_cursor == JoinCursor(page.entries[-1].timestamp, page.entries[-1].lsn)
        cursor = page.next_cursor
        apply_batch(writer, numbered(join("late", 99), first=applied_lsn(writer) + 1))  # newer rows arrive
    assert seen == sorted(seen, reverse=True)
    assert [lsn for _, lsn in seen] == sorted(
        range(1, 21), key=lambda lsn: ((lsn - 1) // 3, lsn), reverse=True
    )


def test_join_logs_filters(ledger):
    writer, reader = ledger
    apply_batch(writer, numbered(*_many_joins(12), join("u0", 0, guild="other")))

    def lsns(**filters) -> list[int]:
        return [e.lsn for e in join_logs(reader, "g", **filters).entries]

    assert lsns(user_id="u1") == [10, 6, 2]
    assert lsns(invite_code="def") == [12, 10, 8, 6, 4, 2]
    assert lsns(staff_id="s2") == [11, 8, 5, 2]
    assert lsns(staff_id="s2", invite_code="def") == [8, 2]
    since, until = T0 + timedelta(seconds=1), T0 + timedelta(seconds=3)
    assert lsns(since=since, until=until) == [9, 8, 7, 6, 5, 4]  # since inclusive, until exclusive
    assert lsns(user_id="nobody") == []
    with pytest.raises(ValueError):
        join_logs(reader, "g", limit=0)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seconds=st.lists(st.integers(0, 5), min_size=1, max_size=30),
    limit=st.integers(1, 7),
    code=st.none() | st.sampled_from(["abc", "def"]),
)
def test_paginating_any_log_lists_exactly_the_filtered_joins_newest_first(
    tmp_path_factory, seconds, limit, code
):
    conn = open_database(tmp_path_factory.mktemp("pages") / "p.sqlite3")
    records = [join(f"u{i}", s, code=("abc", "def")[i % 2]) for i, s in enumerate(seconds)]
    apply_batch(conn, numbered(*records))
    expected = sorted(
        ((r.timestamp, lsn) for lsn, r in numbered(*records) if code in (None, r.invite_code)), reverse=True
    )
    got, cursor = [], None
    while True:
        page = join_logs(conn, "g", invite_code=code, limit=limit, before=cursor)
        assert len(page.entries) <= limit
        got += [(e.timestamp, e.lsn) for e in page.entries]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    conn.close()
    assert got == expected


def test_invite_comparison_puts_discrepancies_first(ledger):
    writer, reader = ledger
    apply_batch(
        writer,
        numbered(
            InviteSnapshotTaken(
                T0,
                "g",
                "PipVault",
                (InviteState("abc", 0, 0, "s1", "Travis#1"), InviteState("new", 0, 0, "s2", "Maria#2")),
            ),
            join("u1", 1, code="abc", staff="s1"),
            join("u2", 2, code="abc", staff="s1"),
            join("u3", 3, code="gone", staff="s3"),  # a code Discord no longer lists
            join("u4", 4, code="def", staff="s2"),
            join("u5", 5, code="big", staff="s2"),
        ),
    )
    rows = invite_comparison(reader, "g", {"abc": 2, "def": 3, "new": 1, "big": 0})
    assert rows == (
        InviteComparison("def", "s2", "s2#0001", 3, 1, 2),
        InviteComparison("big", "s2", "s2#0001", 0, 1, -1),
        InviteComparison("new", "s2", "Maria#2", 1, 0, 1),
        InviteComparison("gone", "s3", "s3#0001", None, 1, None),
        InviteComparison("abc", "s1", "Travis#1", 2, 2, 0),
    )
    assert [r.is_discrepancy for r in rows] == [True, True, True, False, False]


def test_staff_counts_per_day_week_and_month(ledger):
    writer, reader = ledger
    monday = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)  # a Monday
    records = [
        join("u1", 0, staff="s1"),  # T0 = Sunday 2026-03-01
        join("u2", 0, staff="s1"),
        join("u2", 60, staff="s1"),  # the same member again
        join("u3", 0, staff="s2"),
        join("u4", 0, staff=None, code=None),  # credits nobody
    ]
    records += [
        JoinRecorded(monday, "g", "PipVault", "u5", "n", "d", AttributionKind.EXACT, "abc", "s2", "Maria#2"),
        JoinRecorded(
            monday + timedelta(days=31),
            "g",
            "PipVault",
            "u6",
            "n",
            "d",
            AttributionKind.EXACT,
            "abc",
            "s2",
            "Maria#2",
        ),
    ]
    apply_batch(writer, numbered(*records, MemberLeft(T0 + timedelta(hours=1), "g", "u1")))

    days = staff_counts(reader, "g")
    assert [(c.period_start, c.staff_id, c.joins, c.members, c.still_in_guild) for c in days] == [
        (date(2026, 3, 1), "s1", 3, 2, 1),
        (date(2026, 3, 1), "s2", 1, 1, 1),
        (date(2026, 3, 2), "s2", 1, 1, 1),
        (date(2026, 4, 2), "s2", 1, 1, 1),
    ]
    weeks = staff_counts(reader, "g", period="week")
    assert [(c.period_start, c.staff_id, c.joins) for c in weeks] == [
        (date(2026, 2, 23), "s1", 3),
        (date(2026, 2, 23), "s2", 1),
        (date(2026, 3, 2), "s2", 1),
        (date(2026, 3, 30), "s2", 1),
    ]
    months = staff_counts(reader, "g", period="month", since=T0, until=datetime(2026, 4, 1, tzinfo=UTC))
    assert [(c.period_start, c.staff_id, c.joins, c.staff_username) for c in months] == [
        (date(2026, 3, 1), "s1", 3, "s1#0001"),
        (date(2026, 3, 1), "s2", 2, "Maria#2"),
    ]
    with pytest.raises(ValueError):
        staff_counts(reader, "g", period="year")  # type: ignore[arg-type]


def test_staff_profile_one_or_all(ledger):
    writer, reader = ledger
    assert staff_profile(reader, "g", "s1") is None
    assert staff_profile(reader, "g") == ()
    apply_batch(
        writer,
        numbered(
            StaffIbSet(T0, "g", "s2", "Maria#2", "https://broker/ref/m", "M2", "admin"),
            StaffIbSet(T0, "g", "s1", "Travis#1", "https://broker/ref/t", "T1", "admin"),
            StaffIbSet(T0, "other", "s3", "Other#3", "https://broker/ref/o", "O3", "admin"),
        ),
    )
    one = staff_profile(reader, "g", "s1")
    assert one is not None and one.ib_code == "T1"
    assert [p.staff_id for p in staff_profile(reader, "g")] == ["s1", "s2"]


def test_stats_count_rows_and_joins_by_kind(ledger):
    writer, reader = ledger
    apply_batch(
        writer,
        numbered(
            join("u1"),
            join("u2"),
            join("u3", staff=None, code=None),
            join("u4", guild="other"),
            MemberLeft(T0, "g", "u1"),
            StaffIbSet(T0, "g", "s1", "Travis#1", "l", "c", "a"),
            InviteSnapshotTaken(T0, "g", "PipVault", (InviteState("abc", 1), InviteState("def", 2))),
        ),
    )
    result = stats(reader)
    assert (result.applied_lsn, result.joins, result.leaves, result.members, result.members_in_guild) == (
        7,
        4,
        1,
        4,
        3,
    )
    assert (result.staff_profiles, result.invite_snapshots, result.snapshot_invites, result.erasures) == (
        1,
        1,
        2,
        0,
    )
    assert dict(result.joins_by_kind) == {"exact": 3, "unknown": 1}
