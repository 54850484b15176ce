"""The traps invite trackers fall into, each scripted the way it happens on Discord."""

from __future__ import annotations

from service.records import AttributionKind as Kind
from service.records import InviteState, JoinRecorded, MemberLeft
from tests.service.scripted_guild import VANITY, ScriptedGuild


def invite(code: str, uses: int = 0, *, max_uses: int = 0, staff: str = "") -> InviteState:
    return InviteState(code=code, uses=uses, max_uses=max_uses, inviter_id=staff or f"staff-{code}")


def test_an_invite_created_and_used_between_two_fetches_is_credited_as_new() -> None:
    g = ScriptedGuild((invite("A", 5),))
    g.run(10)
    g.create(invite("NEW", staff="42"))
    g.join("u1", "NEW")
    g.run()
    record = g.record("u1")
    assert (record.kind, record.invite_code, record.staff_id) == (Kind.NEW_INVITE, "NEW", "42")


def test_an_invite_created_after_a_join_is_not_that_joins_candidate() -> None:
    # u1 joins through A; in the same second staff create NEW and u2 uses it: Discord's created_at shows u1
    # could not have used NEW, so both are told apart although they share one fetch.
    g = ScriptedGuild((invite("A", 5),), fetch_delay=1.0)
    g.run(10)
    g.join("u1", "A")
    g.run(0.1)
    g.create(invite("NEW", staff="42"))
    g.run(0.1)
    g.join("u2", "NEW")
    g.run()
    assert (g.record("u1").kind, g.record("u1").invite_code) == (Kind.EXACT, "A")
    assert (g.record("u2").kind, g.record("u2").invite_code) == (Kind.NEW_INVITE, "NEW")


def test_two_invites_used_by_two_simultaneous_joins_credit_nobody() -> None:
    g = ScriptedGuild((invite("A", 5, staff="1"), invite("B", 2, staff="2")))
    g.run(10)
    g.join("u1", "A", delay=0.5)
    g.join("u2", "B", delay=0.2)  # events arrive in the other order
    g.run()
    for user in ("u1", "u2"):
        record = g.record(user)
        assert record.kind is Kind.AMBIGUOUS and record.staff_id is None and record.candidates == ("A", "B")


def test_a_vanity_join_while_another_invites_count_rises_is_not_credited_to_that_invite() -> None:
    # The classic mistake: u1 came through the vanity URL, but A rose at the same time (u2, whose event
    # is still on its way when u1's fetch comes back). u1 must not be credited to A's staff member.
    g = ScriptedGuild((invite("A", 5, staff="1"),), vanity_uses=20)
    g.run(10)
    g.join("u1", VANITY, delay=0.1)
    g.join("u2", "A", delay=2.5)
    g.run()
    assert g.record("u1").staff_id is None
    assert g.record("u1").kind in (Kind.AMBIGUOUS, Kind.VANITY)
    assert set(g.record("u1").candidates) <= {VANITY, "A"}
    assert g.record("u2").staff_id in (None, "1")


def test_a_lone_vanity_join_is_vanity_and_credits_nobody() -> None:
    g = ScriptedGuild((invite("A", 5, staff="1"),), vanity_uses=20)
    g.run(10)
    g.join("u1", VANITY)
    g.run()
    record = g.record("u1")
    assert (record.kind, record.invite_code, record.staff_id) == (Kind.VANITY, VANITY, None)


def test_a_member_who_leaves_and_rejoins_gets_two_joins_and_a_leave_in_order() -> None:
    g = ScriptedGuild((invite("A", 5, staff="1"), invite("B", 0, staff="2")))
    g.run(10)
    g.join("u1", "A")
    g.run(20)
    g.leave("u1")
    g.run(20)
    g.join("u1", "B")
    g.run()
    trail = [r for r in g.log if isinstance(r, JoinRecorded | MemberLeft) and r.user_id == "u1"]
    assert [type(r).__name__ for r in trail] == ["JoinRecorded", "MemberLeft", "JoinRecorded"]
    first, _, second = trail
    assert isinstance(first, JoinRecorded) and isinstance(second, JoinRecorded)
    assert (first.invite_code, second.invite_code) == ("A", "B")


def test_a_member_who_leaves_before_the_join_is_decided_is_logged_join_first() -> None:
    g = ScriptedGuild((invite("A", 5, staff="1"),))
    g.run(10)
    g.join("u1", "A")
    g.run(0.5)
    g.leave("u1", delay=0.0)
    g.run()
    trail = [type(r).__name__ for r in g.log if isinstance(r, JoinRecorded | MemberLeft)]
    assert trail == ["JoinRecorded", "MemberLeft"]
    assert g.record("u1").invite_code == "A"


def test_invite_delete_arriving_before_the_join_event_still_gives_max_uses() -> None:
    g = ScriptedGuild((invite("M", 2, max_uses=3, staff="7"), invite("A", 1)))
    g.run(10)
    g.join("u1", "M", delay=1.0, delete_event=0.1)
    g.run()
    record = g.record("u1")
    assert (record.kind, record.invite_code, record.staff_id) == (Kind.MAX_USES, "M", "7")


def test_invite_delete_arriving_after_the_fetch_still_gives_max_uses() -> None:
    g = ScriptedGuild((invite("M", 2, max_uses=3, staff="7"), invite("A", 1)))
    g.run(10)
    g.join("u1", "M", delay=0.1, delete_event=1.5)
    g.run()
    assert (g.record("u1").kind, g.record("u1").staff_id) == (Kind.MAX_USES, "7")


def test_invite_delete_never_seen_still_gives_max_uses() -> None:
    g = ScriptedGuild((invite("M", 2, max_uses=3, staff="7"),))
    g.run(10)
    g.join("u1", "M", delete_event=None)  # the bot lacks Manage Channels: no invite events at all
    g.run()
    assert g.record("u1").kind is Kind.MAX_USES


def test_an_invite_deleted_by_hand_long_before_a_discovery_join_is_not_credited() -> None:
    # M sat one use short of its max and a staff member deleted it; a minute later someone joins through
    # server discovery. Without the INVITE_DELETE's timing this looks exactly like M's last use; with it,
    # M was gone before u1 joined.
    g = ScriptedGuild((invite("M", 0, max_uses=1, staff="7"), invite("A", 1)))
    g.run(10)
    g.delete("M", event=0.2)
    g.run(60)
    g.join("u1", None)
    g.run()
    record = g.record("u1")
    assert (record.kind, record.staff_id, record.candidates) == (Kind.UNKNOWN, None, ())


def test_a_repeated_member_join_event_is_one_join() -> None:
    g = ScriptedGuild((invite("A", 5, staff="1"),))
    g.run(10)
    member = g.join("u1", "A")
    g.run(5)
    g.join("u1", None, joined_at=member.joined_at)  # GUILD_MEMBER_ADD sent again, same joined_at
    g.run()
    assert len(g.joins()) == 1 and g.record("u1").invite_code == "A"


def test_a_repeated_member_join_without_joined_at_within_the_window_is_one_join() -> None:
    from service.events import MemberInfo, MemberJoined

    g = ScriptedGuild((invite("A", 5, staff="1"),))
    g.run(10)
    member = MemberInfo("u1", "n", "N")
    g.invites["A"] = invite("A", 6, staff="1")
    g.feed(MemberJoined("900000000000000001", g.at(), member=member))
    g.run(30)
    g.feed(MemberJoined("900000000000000001", g.at(), member=member))
    g.run()
    assert len(g.joins()) == 1 and g.record("u1").invite_code == "A"


def test_joins_before_the_guild_is_available_still_get_a_record_and_credit_nobody() -> None:
    g = ScriptedGuild((invite("A", 5, staff="1"),), available=False)
    g.join("u1", "A")
    g.run()
    record = g.record("u1")
    assert record.staff_id is None and record.kind is Kind.AMBIGUOUS
    # the fetch it triggered became the baseline: the next join is decided normally
    g.join("u2", "A")
    g.run()
    assert g.record("u2").kind is Kind.EXACT


def test_a_single_use_invite_used_up_before_its_invite_create_arrives_is_not_pinned_on_a_later_join() -> None:
    # ONE is created and used up at once; its INVITE_CREATE arrives only after a fetch that no longer lists
    # it. Its use lies between its creation and that fetch, so the discovery join after cannot be it.
    g = ScriptedGuild((invite("A", 5, staff="1"),))
    g.run(10)
    g.create(invite("ONE", max_uses=1, staff="7"), event=2.0)
    g.run(0.1)
    g.join("u1", "ONE", delay=0.2, delete_event=2.5)
    g.run(1.8)
    g.join("u2", None, delay=0.1)
    g.run()
    assert g.record("u2").staff_id is None
    assert (g.record("u1").kind, g.record("u1").staff_id) == (Kind.MAX_USES, "7")


def test_an_invite_used_up_before_the_first_fetch_is_not_pinned_on_whoever_is_heard_of_first() -> None:
    # The first fetch fails; meanwhile ONE is created and used up by u1, whose event is slow. u2 (discovery)
    # is heard of first, just before the retried fetch becomes the baseline.
    g = ScriptedGuild((invite("A", 5, staff="1"),), available=False)
    g.answers = ["fail"]
    g.becomes_available()
    g.run(0.3)
    g.create(invite("ONE", max_uses=1, staff="7"), event=0.2)
    g.run(0.3)
    g.join("u1", "ONE", delay=2.5, delete_event=0.9)
    g.run(0.1)
    g.join("u2", None, delay=0.5)
    g.run()
    assert g.record("u2").staff_id is None
    assert g.record("u1").staff_id in (None, "7")


def test_a_stale_repeat_of_an_earlier_join_after_a_leave_and_rejoin_is_not_a_third_join() -> None:
    g = ScriptedGuild((invite("A", 5, staff="1"), invite("B", 0, staff="2")))
    g.run(10)
    first = g.join("u1", "A")
    g.run(10)
    g.leave("u1")
    g.run(5)
    second = g.join("u1", "B")
    g.run(5)
    g.join("u1", None, joined_at=first.joined_at, delay=0.0)  # re-sent, late, for the first join
    g.join("u1", None, joined_at=second.joined_at, delay=1.0)  # and for the second
    g.run()
    assert [(r.invite_code, r.timestamp) for r in g.joins()] == [
        ("A", first.joined_at),
        ("B", second.joined_at),
    ]
