"""Restarts and gateway gaps: reconciling from the last logged snapshot, the joins logged since, and the
member list; and never crediting anybody from counts that may hold joins the bot never saw."""

from __future__ import annotations

from datetime import timedelta

from service.attribution import AttributionConfig, restore_events
from service.records import AttributionKind as Kind
from service.records import InviteSnapshotTaken, InviteState, JoinRecorded, MemberLeft, UserErased
from tests.service.scripted_guild import GUILD, ScriptedGuild


def invite(code: str, uses: int = 0, *, max_uses: int = 0) -> InviteState:
    return InviteState(code=code, uses=uses, max_uses=max_uses, inviter_id=f"staff-{code}")


def two_invite_guild() -> ScriptedGuild:
    g = ScriptedGuild((invite("A", 3), invite("B", 1)))
    g.run(5)
    return g


def test_restore_events_gather_the_last_snapshot_the_joins_since_and_who_is_present() -> None:
    g = two_invite_guild()
    g.join("u1", "A")
    g.run(30)
    g.join("u2", "B")
    g.run(30)
    g.leave("u1")
    g.run()
    (restored,) = restore_events(g.log)
    snapshots = [r for r in g.log if isinstance(r, InviteSnapshotTaken)]
    assert restored.guild_id == GUILD and restored.guild_name == "PipVault"
    assert restored.snapshot == snapshots[-1]
    assert [j.user_id for j in restored.recent_joins] == ["u1", "u2"]
    assert set(restored.known_user_ids) == {"u1", "u2"}
    assert [m.user_id for m in restored.present] == ["u2"]
    assert restored.last_seen is not None and restored.last_seen >= g.record("u2").timestamp


def test_restore_forgets_an_erased_user() -> None:
    g = two_invite_guild()
    g.join("u1", "A")
    g.run()
    erased = UserErased(timestamp=g.at(), guild_id=GUILD, user_id="u1", requested_by="u1")
    (restored,) = restore_events([*g.log, erased])
    assert restored.known_user_ids == () and restored.present == () and restored.recent_joins == ()


def test_a_join_waiting_for_its_decision_when_the_bot_stops_is_reconciled_after_the_restart() -> None:
    g = two_invite_guild()
    g.join("u1", "A", delay=0.1)
    g.run(1.0)  # its event arrived, its fetch is on the way: nothing logged yet
    assert g.joins() == []
    g.stop()
    g.run(120)
    g.start()
    g.run()
    record = g.record("u1")
    assert (record.kind, record.invite_code) == (Kind.OFFLINE_RECONCILED, "A")


def test_joins_logged_after_the_snapshot_explain_their_own_uses_after_a_restart() -> None:
    config = AttributionConfig(snapshot_log_interval=timedelta(hours=1))
    g = ScriptedGuild((invite("A", 3), invite("B", 1)), config=config)
    g.run(5)
    for n in range(3):  # logged after the only snapshot: A rises by 3 since it
        g.join(f"live{n}", "A")
        g.run(30)
    g.stop()
    g.join("down", "A")  # one more on A while down: the counts show 4 over the snapshot
    g.run(60)
    g.start()
    g.run()
    assert len([r for r in g.log if isinstance(r, InviteSnapshotTaken)]) >= 1
    record = g.record("down")
    assert (record.kind, record.invite_code, record.staff_id) == (Kind.OFFLINE_RECONCILED, "A", "staff-A")


def test_a_join_event_sent_again_after_a_restart_is_not_a_second_join() -> None:
    g = two_invite_guild()
    member = g.join("u1", "A")
    g.run()
    g.stop()
    g.run(10)
    g.start()
    g.join("u1", None, joined_at=member.joined_at)  # the gateway replays GUILD_MEMBER_ADD
    g.run()
    assert len(g.joins()) == 1


def test_several_joins_while_down_over_different_invites_credit_nobody() -> None:
    g = two_invite_guild()
    g.stop()
    g.join("d1", "A")
    g.run(10)
    g.join("d2", "B")
    g.run(10)
    g.join("d3", None)
    g.run(10)
    g.start()
    g.run()
    for user in ("d1", "d2", "d3"):
        record = g.record(user)
        assert record.kind is Kind.OFFLINE_UNKNOWN and record.staff_id is None
        assert record.candidates == ("A", "B")


def test_joins_while_down_on_one_invite_are_all_reconciled() -> None:
    g = two_invite_guild()
    g.stop()
    for n in range(3):
        g.join(f"d{n}", "B")
        g.run(10)
    g.start()
    g.run()
    assert {(g.record(f"d{n}").kind, g.record(f"d{n}").invite_code) for n in range(3)} == {
        (Kind.OFFLINE_RECONCILED, "B")
    }


def test_without_a_member_list_the_time_away_is_blind_and_nobody_is_credited_from_it() -> None:
    g = two_invite_guild()
    g.stop()
    g.join("unseen", "A")  # nobody will ever tell the bot about this one
    g.run(30)
    g.start(with_members=False)
    g.join("u1", None)  # discovery, right after the restart: A's rise is not theirs
    g.run()
    record = g.record("u1")
    assert record.staff_id is None
    g.join("u2", "B")  # once a clean fetch follows the restart, joins are told apart again
    g.run()
    assert (g.record("u2").kind, g.record("u2").invite_code) == (Kind.EXACT, "B")


def test_a_join_lost_in_a_gateway_gap_is_found_in_the_member_list_and_reconciled() -> None:
    g = two_invite_guild()
    g.disconnect()
    g.join("gap", "B")
    g.run(20)
    g.reconnect()
    g.run()
    record = g.record("gap")
    assert (record.kind, record.invite_code) == (Kind.OFFLINE_RECONCILED, "B")


def test_a_live_join_is_not_credited_with_a_use_made_by_someone_lost_in_an_unannounced_gap() -> None:
    g = two_invite_guild()
    g.disconnect(announce=False)  # the adapter did not notice
    g.join("lost", "A")
    g.run(20)
    g.reconnect(with_members=False)
    g.join("u1", None, delay=0.1)
    g.run()
    assert g.record("u1").staff_id is None


def test_the_log_keeps_join_and_leave_order_across_a_restart() -> None:
    g = two_invite_guild()
    g.join("u1", "A")
    g.run()
    g.stop()
    g.run(10)
    g.start()
    g.leave("u1")
    g.run()
    assert [type(r) for r in g.log if isinstance(r, JoinRecorded | MemberLeft)] == [JoinRecorded, MemberLeft]


def test_a_leave_arriving_after_the_rejoin_does_not_make_the_rejoin_an_offline_join_later() -> None:
    g = two_invite_guild()
    g.join("u1", "A")
    g.run(10)
    g.leave("u1", delay=2.0)  # this GUILD_MEMBER_REMOVE is slow...
    g.run(0.5)
    g.join("u1", "B", delay=0.1)  # ...and arrives after the rejoin's GUILD_MEMBER_ADD
    g.run()
    g.stop()
    g.run(30)
    g.start()  # the member list shows u1, joined at the rejoin, although the log's last word is a leave
    g.run()
    assert [r.invite_code for r in g.joins() if r.user_id == "u1"] == ["A", "B"]
