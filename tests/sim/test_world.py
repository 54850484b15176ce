"""The simulator's world rules, without sockets: uses counting, max-uses deletion, rejoin flags, vanity uses,
expiry, member listing, command ids, snowflake times, the rate-limit budget."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sim.discord_constants import Intent, MemberFlag, Permission, snowflake_at, snowflake_time
from sim.errors import DiscordAPIError
from sim.model import VANITY
from sim.ratelimit import RouteBudget
from sim.world import SimWorld


@pytest.fixture
def world() -> SimWorld:
    return SimWorld()


def test_user_ids_carry_their_creation_time(world: SimWorld) -> None:
    created = datetime(2024, 3, 1, 12, 30, tzinfo=UTC)
    users = [world.add_user(f"u{i}", created_at=created) for i in range(5000)]
    assert len({u.id for u in users}) == 5000  # unique even when made "at the same time"
    assert all(abs(snowflake_time(u.id) - created) < timedelta(milliseconds=1) for u in users)
    assert users[0].created_at == snowflake_time(users[0].id)
    with pytest.raises(ValueError, match="before the Discord epoch"):
        snowflake_at(datetime(2014, 1, 1, tzinfo=UTC))


def test_join_through_an_invite_counts_a_use_and_dispatches_member_add(world: SimWorld) -> None:
    guild, _ = world.add_guild("g")
    staff = world.add_user("staff")
    invite, created = world.create_invite(guild, staff, code="abc")
    assert [e.name for e in created] == ["INVITE_CREATE"]
    assert created[0].intent == Intent.GUILD_INVITES and created[0].permission == Permission.MANAGE_CHANNELS
    newbie = world.add_user("newbie")

    member, events = world.join(guild, newbie, "abc")

    assert invite.uses == 1 and member.joined_via == "abc" and member.flags == 0
    assert [e.name for e in events] == ["GUILD_MEMBER_ADD"]
    assert events[0].intent == Intent.GUILD_MEMBERS
    assert events[0].data["guild_id"] == str(guild.id) and events[0].data["user"]["id"] == str(newbie.id)
    assert events[0].data["joined_at"].startswith(str(member.joined_at.year))
    with pytest.raises(ValueError, match="already a member"):
        world.join(guild, newbie, "abc")


def test_the_last_use_deletes_the_invite_after_the_join(world: SimWorld) -> None:
    guild, _ = world.add_guild("g")
    invite, _ = world.create_invite(guild, None, code="two", max_uses=2)
    world.join(guild, world.add_user("a"), "two")
    _, events = world.join(guild, world.add_user("b"), "two")
    assert [e.name for e in events] == ["GUILD_MEMBER_ADD", "INVITE_DELETE"]
    assert events[1].data == {"channel_id": str(invite.channel_id), "guild_id": str(guild.id), "code": "two"}
    assert world.live_invites(guild) == []
    with pytest.raises(ValueError, match="no invite"):
        world.join(guild, world.add_user("c"), "two")


def test_a_deletion_by_hand_is_audited_with_the_invites_uses(world: SimWorld) -> None:
    guild, _ = world.add_guild("g")
    staff = world.add_user("staff")
    invite, _ = world.create_invite(guild, staff, code="abc")
    world.join(guild, world.add_user("a"), "abc")
    _, events = world.delete_invite("abc", by=staff)
    assert [e.name for e in events] == ["INVITE_DELETE", "GUILD_AUDIT_LOG_ENTRY_CREATE"]
    audit = events[1]
    assert (audit.intent, audit.permission) == (Intent.GUILD_MODERATION, Permission.VIEW_AUDIT_LOG)
    assert audit.data["action_type"] == 42 and audit.data["user_id"] == str(staff.id)
    old = {change["key"]: change["old_value"] for change in audit.data["changes"]}
    assert (old["code"], old["uses"], old["max_uses"], old["inviter_id"]) == ("abc", 1, 0, str(staff.id))
    assert old["channel_id"] == str(invite.channel_id) and "new_value" not in audit.data["changes"][0]


def test_leave_then_rejoin_sets_did_rejoin(world: SimWorld) -> None:
    guild, _ = world.add_guild("g")
    person = world.add_user("p")
    world.join(guild, person, None)
    _, left = world.leave(guild, person)
    assert [e.name for e in left] == ["GUILD_MEMBER_REMOVE"] and left[0].data["user"]["id"] == str(person.id)
    member, events = world.join(guild, person, None)
    assert member.flags & MemberFlag.DID_REJOIN and events[0].data["flags"] & MemberFlag.DID_REJOIN
    with pytest.raises(ValueError, match="not a member"):
        world.leave(guild, world.add_user("stranger"))


def test_vanity_joins_count_vanity_uses_only(world: SimWorld) -> None:
    guild, _ = world.add_guild("g", vanity_code="cool", vanity_uses=4)
    invite, _ = world.create_invite(guild, None, code="x")
    member, _ = world.join(guild, world.add_user("v"), VANITY)
    assert guild.vanity_uses == 5 and invite.uses == 0 and member.joined_via == VANITY
    plain, _ = world.add_guild("plain")
    with pytest.raises(ValueError, match="no vanity"):
        world.join(plain, world.add_user("w"), VANITY)


def test_expired_invites_vanish_and_cannot_be_used(world: SimWorld) -> None:
    guild, _ = world.add_guild("g")
    world.create_invite(guild, None, code="hour", max_age=3600)
    world.create_invite(guild, None, code="forever")
    world.advance_time(3599)
    assert [i.code for i in world.live_invites(guild)] == ["hour", "forever"]
    world.advance_time(2)
    with pytest.raises(ValueError, match="expired"):
        world.join(guild, world.add_user("late"), "hour")
    assert [i.code for i in world.live_invites(guild)] == ["forever"]


def test_members_list_by_id_after_a_cursor(world: SimWorld) -> None:
    guild, _ = world.add_guild("g")  # owner and bot are members
    for i in range(5):
        world.join(guild, world.add_user(f"m{i}"), None)
    everyone = world.list_members(guild, limit=1000)
    assert len(everyone) == 7 and [m.id for m in everyone] == sorted(m.id for m in everyone)
    page = world.list_members(guild, limit=3, after=everyone[2].id)
    assert [m.id for m in page] == [m.id for m in everyone[3:6]]


def test_command_overwrite_keeps_ids_by_name(world: SimWorld) -> None:
    first = world.commands.put(None, [{"name": "a", "description": "A"}, {"name": "b", "description": "B"}])
    assert all(c["id"] and c["application_id"] == str(world.application_id) for c in first)
    second = world.commands.put(None, [{"name": "b", "description": "B2"}, {"name": "c", "description": "C"}])
    assert second[0]["id"] == first[1]["id"] and second[1]["id"] not in {c["id"] for c in first}
    assert world.commands.find(None, "c")["description"] == "C"
    with pytest.raises(KeyError, match="no slash command 'a'"):
        world.commands.find(None, "a")


def test_bot_without_send_permission_cannot_post(world: SimWorld) -> None:
    guild, _ = world.add_guild("g", bot_permissions=Permission.VIEW_CHANNEL)
    with pytest.raises(DiscordAPIError) as raised:
        world.post_channel_message(guild.channel_named("join-log"), world.bot_user, {"content": "hi"}, [])
    assert raised.value.status == 403


def test_budget_allows_n_per_window_then_429s_until_the_window_ends() -> None:
    now = [100.0]
    budget = RouteBudget(limit=2, window_s=1.0, bucket="b", clock=lambda: now[0])
    first, second, third = (budget.take("g1") for _ in range(3))
    assert first.allowed and second.allowed and not third.allowed
    assert (first.headers["X-RateLimit-Remaining"], second.headers["X-RateLimit-Remaining"]) == ("1", "0")
    assert third.retry_after == 1.0 and third.headers["Retry-After"] == "1"
    assert third.body() == {
        "message": "You are being rate limited.",
        "retry_after": 1.0,
        "global": False,
        "code": 0,
    }
    assert budget.take("g2").allowed  # counted per guild
    now[0] += 0.6
    assert budget.take("g1").retry_after == pytest.approx(0.4)
    now[0] += 0.5
    assert budget.take("g1").allowed
    assert budget.rejected == 2
