"""Invites deleted by hand, and the use count the audit log keeps of them (`InviteFinalUses`), scripted the
way it happens on Discord: the entry before or after the join event, after the fetch that found the invite
gone has settled, too late, never; a rejoin; a restart; a count that belongs to another invite of its code.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from service.attribution import AttributionConfig
from service.events import InviteFinalUses
from service.records import AttributionKind as Kind
from service.records import InviteState
from tests.service.scripted_guild import GUILD, ScriptedGuild

CONFIG = AttributionConfig()
LATENCY = CONFIG.gateway_latency.total_seconds()
HOLD = CONFIG.audit_log_latency.total_seconds()


def invite(code: str, uses: int = 0, *, max_uses: int = 0, staff: str = "") -> InviteState:
    return InviteState(code=code, uses=uses, max_uses=max_uses, inviter_id=staff or f"staff-{code}")


def guild() -> ScriptedGuild:
    g = ScriptedGuild((invite("A", 5, staff="1"), invite("X", 3, staff="7")))
    g.run(10)
    return g


# (join event delay, deletion after the use, audit entry delay after the deletion) -> what u1 gets.
# The first fetch is asked when the join event arrives and served 0.1 s later, always after the deletion:
# no invite count ever shows u1's use.
CREDITED = "credited"
HELD_OUT = "ambiguous"
TIMINGS = {
    "entry before the join event": (2.0, 0.5, 0.2, CREDITED),
    "entry after the join event, before the fetch settled": (0.3, 0.05, 1.0, CREDITED),
    "entry after the fetch settled, within audit_log_latency": (0.3, 0.05, LATENCY + 1.0, CREDITED),
    "entry after audit_log_latency": (0.3, 0.05, HOLD + 10.0, HELD_OUT),
    "entry never sent": (0.3, 0.05, None, HELD_OUT),
}


@pytest.mark.parametrize(("join_delay", "delete_after", "audit", "expected"), TIMINGS.values(), ids=TIMINGS)
def test_a_join_through_an_invite_deleted_before_any_fetch_counted_it(
    join_delay: float, delete_after: float, audit: float | None, expected: str
) -> None:
    g = guild()
    joined = g.now
    g.join("u1", "X", delay=join_delay)
    g.run(delete_after)
    g.delete("X", audit=audit)
    g.run()
    record = g.record("u1")
    if expected == CREDITED:
        assert (record.kind, record.invite_code, record.staff_id) == (Kind.EXACT, "X", "7")
        assert (record.uses_before, record.uses_after) == (3, 4)
    else:  # never a guess; and not kept waiting past the fetch that found X gone plus audit_log_latency
        assert (record.kind, record.staff_id, record.candidates) == (Kind.AMBIGUOUS, None, ("X",))
        decided = (record.decided_at - g.at(joined)).total_seconds()
        assert HOLD <= decided <= join_delay + HOLD + 1.0


def test_without_the_wait_a_late_entry_is_not_waited_for() -> None:
    g = ScriptedGuild(
        (invite("A", 5, staff="1"), invite("X", 3, staff="7")),
        config=AttributionConfig(audit_log_latency=timedelta(0)),
    )
    g.run(10)
    joined = g.now
    g.join("u1", "X")
    g.run(0.05)
    g.delete("X", audit=LATENCY + 1.0)
    g.run()
    record = g.record("u1")
    assert (record.kind, record.staff_id) == (Kind.AMBIGUOUS, None)
    assert (record.decided_at - g.at(joined)).total_seconds() < LATENCY + 1.0


def test_an_invite_deleted_unused_is_nobodys_candidate() -> None:
    # X is deleted by hand as u1 arrives through server discovery: the audit log says X was not used since
    # it was last counted, so u1 came through no invite (without the entry: ambiguous, X a candidate).
    g = guild()
    g.join("u1", None)
    g.run(0.05)
    g.delete("X", audit=0.5)
    g.run()
    record = g.record("u1")
    assert (record.kind, record.staff_id, record.candidates) == (Kind.UNKNOWN, None, ())


def test_an_invite_one_use_short_deleted_by_hand_is_not_taken_for_its_last_use() -> None:
    # The case DESIGN.md's max_uses rule cannot tell from a last use: M one use short of its max, deleted by
    # hand as u1 arrives through discovery. The audit log's count (no use) settles it.
    g = ScriptedGuild((invite("M", 0, max_uses=1, staff="7"), invite("A", 1)))
    g.run(10)
    g.join("u1", None)
    g.run(0.05)
    g.delete("M", event=0.2, audit=0.5)
    g.run()
    record = g.record("u1")
    assert (record.kind, record.staff_id) == (Kind.UNKNOWN, None)


def test_two_joins_in_one_stretch_through_the_deleted_invite_and_a_rising_one_are_never_swapped() -> None:
    # u2 used A and u1 used X (deleted at once) between the same two counts: X's final count and A's rise
    # are one use each, and either join may have made either use; at most each is credited its own.
    g = guild()
    g.join("u2", "A", delay=0.1)
    g.run(0.15)
    g.join("u1", "X", delay=2.0)
    g.run(0.05)
    g.delete("X", audit=0.3)
    g.run()
    assert g.record("u1").staff_id in (None, "7") and g.record("u2").staff_id in (None, "1")
    assert {g.record("u1").kind, g.record("u2").kind} <= {Kind.EXACT, Kind.AMBIGUOUS}


def test_a_member_who_used_the_deleted_invite_leaves_and_rejoins_through_another() -> None:
    g = guild()
    g.join("u1", "X")
    g.run(0.05)
    g.delete("X", audit=1.0)
    g.run(30)
    g.leave("u1")
    g.run(30)
    g.join("u1", "A")
    g.run()
    first, second = (r for r in g.joins() if r.user_id == "u1")
    assert (first.kind, first.invite_code, first.staff_id) == (Kind.EXACT, "X", "7")
    assert (second.kind, second.invite_code, second.staff_id) == (Kind.EXACT, "A", "1")


def test_a_restart_that_loses_the_entry_credits_nobody_on_a_guess() -> None:
    # The bot stops before u1's event and X's audit entry arrive; after the restart u1 is an offline join,
    # and X is gone from the counts without a final count.
    g = guild()
    g.join("u1", "X", delay=0.3)
    g.run(0.05)
    g.delete("X", audit=0.5)
    g.run(0.1)
    g.stop()
    g.run(30)
    g.start()
    g.run()
    record = g.record("u1")
    assert (record.kind, record.staff_id, record.candidates) == (Kind.OFFLINE_UNKNOWN, None, ("X",))


def test_an_entry_read_after_a_restart_reconciles_the_offline_join() -> None:
    # The same, but the entry reaches the core after the restart (GET /guilds/{id}/audit-logs keeps it for
    # 45 days): u1's join while the bot was away is reconciled exactly.
    g = guild()
    g.join("u1", "X", delay=0.3)
    g.run(0.05)
    deleted_at, x = g.at(), g.invites["X"]
    g.delete("X", audit=None)
    g.run(0.1)
    g.stop()
    g.run(30)
    g.start()
    g.gateway(1.0, g.audit_entry(x, deleted_at=deleted_at))
    g.run()
    record = g.record("u1")
    assert (record.kind, record.invite_code, record.staff_id) == (Kind.OFFLINE_RECONCILED, "X", "7")


@pytest.mark.parametrize(
    ("uses", "max_uses", "inviter", "deleted_ago"),
    [
        (2, 0, "7", 0.0),  # fewer uses than X was last counted with: another invite of that code
        (4, 10, "7", 0.0),  # another max_uses
        (4, 0, "8", 0.0),  # another inviter
        (4, 0, "7", 3600.0),  # deleted an hour before X was last listed
    ],
    ids=["fewer uses", "other max_uses", "other inviter", "deleted before it was listed"],
)
def test_a_count_that_cannot_be_this_invites_is_not_used(
    uses: int, max_uses: int, inviter: str, deleted_ago: float
) -> None:
    g = guild()
    g.join("u1", "X")
    g.run(0.05)
    g.delete("X")
    entry = InviteFinalUses(
        GUILD,
        g.at(),
        code="X",
        uses=uses,
        max_uses=max_uses,
        inviter_id=inviter,
        deleted_at=g.at(g.now - deleted_ago),
    )
    g.gateway(0.5, lambda: entry)
    g.run()
    record = g.record("u1")
    assert (record.kind, record.staff_id, record.candidates) == (Kind.AMBIGUOUS, None, ("X",))
