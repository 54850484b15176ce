"""Time in the core: fetch requests, rate limits, failed fetches, bounded waits, wake-ups, arrival order."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from service.attribution import AttributionConfig, Attributor, FetchInvites, LogRecord, WakeAt
from service.events import ClockTick, FetchFailed, GuildAvailable, InvitesFetched, MemberInfo, MemberJoined
from service.records import AttributionKind as Kind
from service.records import InviteSnapshotTaken, InviteState, JoinRecorded
from tests.service.scripted_guild import GUILD, ScriptedGuild


def invite(code: str, uses: int = 0) -> InviteState:
    return InviteState(code=code, uses=uses, inviter_id=f"staff-{code}")


def test_while_discord_says_retry_after_no_fetch_is_requested_and_joins_wait_for_the_next() -> None:
    g = ScriptedGuild((invite("A", 1), invite("B", 1)))
    g.run(10)
    g.answers = [("429", 20.0)]
    g.join("u1", "A")
    g.run(1)
    asked = len(g.fetches)
    g.run(5)
    g.join("u2", "A")
    g.run(10)
    assert len(g.fetches) == asked, "a fetch was requested while Discord said to retry later"
    assert g.joins() == []
    g.run()
    assert g.fetches[asked] >= 10.3 + 20.0
    for user in ("u1", "u2"):  # both coalesced into the fetch after the wait: both used A
        assert (g.record(user).kind, g.record(user).invite_code) == (Kind.EXACT, "A")


def test_joins_coalesced_by_a_rate_limit_over_several_invites_credit_nobody() -> None:
    g = ScriptedGuild((invite("A", 1), invite("B", 1)))
    g.run(10)
    g.answers = [("429", 30.0)]
    g.join("u1", "A")
    g.run(10)
    g.join("u2", "B")
    g.run()
    assert {g.record(u).kind for u in ("u1", "u2")} == {Kind.AMBIGUOUS}
    assert g.record("u1").candidates == ("A", "B")


def test_a_failed_fetch_is_retried_with_growing_backoff() -> None:
    config = AttributionConfig(backoff_initial=timedelta(seconds=2), backoff_max=timedelta(seconds=8))
    g = ScriptedGuild((invite("A", 1),), config=config)
    g.run(10)
    g.answers = ["fail", "fail", "fail", "fail"]
    g.join("u1", "A")
    g.run()
    gaps = [round(b - a, 1) for a, b in zip(g.fetches[1:], g.fetches[2:], strict=False)]
    assert gaps[:4] == [2.2, 4.2, 8.2, 8.2]  # backoff after each answer (0.2 s round trip), capped
    assert g.record("u1").kind is Kind.EXACT


def test_a_fetch_never_answered_counts_as_failed_after_the_timeout() -> None:
    config = AttributionConfig(fetch_timeout=timedelta(seconds=5))
    g = ScriptedGuild((invite("A", 1),), config=config)
    g.run(10)
    g.answers = ["silent"]
    g.join("u1", "A")
    g.run()
    assert g.fetches[2] - g.fetches[1] >= 5
    assert g.record("u1").kind is Kind.EXACT


def test_a_join_undecidable_for_too_long_is_recorded_rather_than_lost() -> None:
    config = AttributionConfig(max_join_wait=timedelta(seconds=60))
    g = ScriptedGuild((invite("A", 1),), config=config)
    g.run(10)
    g.answers = ["fail"] * 100
    g.join("u1", "A")
    g.run(59)
    assert g.joins() == []
    g.run(2)
    record = g.record("u1")
    assert record.kind is Kind.AMBIGUOUS and record.staff_id is None and record.candidates == ()
    assert record.decided_at is not None and record.decided_at - record.timestamp >= timedelta(seconds=60)


def test_a_late_answer_to_a_timed_out_fetch_is_ignored() -> None:
    core = Attributor(AttributionConfig(fetch_timeout=timedelta(seconds=5)))
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    first = core.handle(GuildAvailable(GUILD, "g", t0))
    request = next(e for e in first if isinstance(e, FetchInvites))
    retry = core.handle(ClockTick(t0 + timedelta(seconds=6)))
    assert not any(isinstance(e, FetchInvites) for e in retry)  # backing off
    late = core.handle(InvitesFetched(GUILD, request.request_id, t0 + timedelta(seconds=7), invites=()))
    assert not any(isinstance(e, LogRecord) for e in late), "a stale answer became the baseline"
    effects = late + core.handle(ClockTick(t0 + timedelta(seconds=8)))
    assert [e.request_id for e in effects if isinstance(e, FetchInvites)] == [request.request_id + 1]


def test_only_one_fetch_is_in_flight_per_guild() -> None:
    g = ScriptedGuild((invite("A", 1),), fetch_delay=2.0)
    g.run(10)
    for n in range(5):
        g.join(f"u{n}", "A", delay=0.1 + n * 0.3)
    g.run()
    assert all(b - a >= 2.0 for a, b in zip(g.fetches, g.fetches[1:], strict=False))


def test_records_leave_in_arrival_order_even_when_a_later_join_is_decided_first() -> None:
    g = ScriptedGuild((invite("A", 1),))
    g.run(10)
    g.answers = [("429", 30.0)]
    g.join("u1", "A", delay=0.1)
    g.run(1)
    g.join("bot", None, bot=True, delay=0.1)  # decided at once: a bot never uses an invite
    g.run(3)
    assert g.joins() == []  # held behind u1
    g.run()
    assert [r.user_id for r in g.joins()] == ["u1", "bot"]


def test_the_core_asks_to_be_woken_and_a_tick_at_that_time_makes_progress() -> None:
    core = Attributor()
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    effects = core.handle(GuildAvailable(GUILD, "g", t0))
    request = next(e for e in effects if isinstance(e, FetchInvites))
    core.handle(
        InvitesFetched(GUILD, request.request_id, t0 + timedelta(seconds=0.2), invites=(invite("A", 1),))
    )
    member = MemberInfo("u1", "u", "U", joined_at=t0 + timedelta(seconds=9.9))
    effects = core.handle(MemberJoined(GUILD, t0 + timedelta(seconds=10), member=member))
    request = next(e for e in effects if isinstance(e, FetchInvites))
    effects = core.handle(
        InvitesFetched(GUILD, request.request_id, t0 + timedelta(seconds=10.2), invites=(invite("A", 2),))
    )
    wake = [e for e in effects if isinstance(e, WakeAt)]
    assert wake and wake[-1].at == core.next_wake()
    assert wake[-1].at >= t0 + timedelta(seconds=10.2) + AttributionConfig().gateway_latency
    early = core.handle(ClockTick(wake[-1].at - timedelta(seconds=0.5)))
    assert not any(isinstance(e, LogRecord) for e in early)
    effects = core.handle(ClockTick(wake[-1].at))
    joins = [e.record for e in effects if isinstance(e, LogRecord) and isinstance(e.record, JoinRecorded)]
    assert [j.invite_code for j in joins] == ["A"]
    assert core.next_wake() is None


def test_a_failed_fetch_answer_needs_the_matching_request_id() -> None:
    core = Attributor()
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    request = next(e for e in core.handle(GuildAvailable(GUILD, "g", t0)) if isinstance(e, FetchInvites))
    core.handle(FetchFailed(GUILD, request.request_id + 7, t0 + timedelta(seconds=1)))
    effects = core.handle(InvitesFetched(GUILD, request.request_id, t0 + timedelta(seconds=2), invites=()))
    assert any(isinstance(e, LogRecord) and isinstance(e.record, InviteSnapshotTaken) for e in effects)


def test_snapshots_are_logged_at_the_start_and_then_at_most_every_interval() -> None:
    config = AttributionConfig(snapshot_log_interval=timedelta(minutes=10))
    g = ScriptedGuild((invite("A", 1),), config=config)
    for n in range(30):  # a join a minute for half an hour
        g.run(60)
        g.join(f"u{n}", "A")
    g.run()
    times = [r.timestamp for r in g.log if isinstance(r, InviteSnapshotTaken)]
    assert 3 <= len(times) <= 4
    assert all(b - a >= timedelta(minutes=10) for a, b in itertools.pairwise(times))
