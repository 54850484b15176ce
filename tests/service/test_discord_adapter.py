"""The interactions.py adapter with the real client against the simulator: login, events in arrival order,
invite fetches (uses, inviter, vanity), 429s, RESUME, INVALID_SESSION, supervision after a failed reconnect.

asyncio only: interactions.py does not run on trio (the `anyio_backend` parametrization is narrowed here).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import datetime

import anyio
import pytest

from service.discord_adapter import DiscordAdapter, GatewayFatalError
from service.events import (
    MEMBER_FLAG_DID_REJOIN,
    GatewayDisconnected,
    GuildAvailable,
    InviteCreated,
    InviteDeleted,
    InviteFinalUses,
    MemberJoined,
    MemberRemoved,
)
from service.gateway import FetchError, RateLimited
from sim import SimServer
from tests.commands.support import running_adapter

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("anyio_backend", ["asyncio"])]


@pytest.fixture
async def sim(anyio_backend: str) -> AsyncIterator[SimServer]:
    async with SimServer.running(heartbeat_interval_ms=300) as server:
        yield server
    assert server.stats.unhandled_requests == []


async def test_login_announces_the_guild_and_gateway_events_arrive_in_order(sim: SimServer) -> None:
    guild = sim.add_guild("PipVault", vanity_code="pipvault")
    travis = sim.add_user("TravisP")
    sim.create_invite(guild, travis, code="abc123XYZ")
    early = sim.add_user("early_bird")
    sim.join(guild, early, via="abc123XYZ")
    ready_calls: list[str] = []
    async with running_adapter(sim, on_ready=lambda: ready_calls.append("ready")) as (adapter, seen):
        [available] = await seen.wait_for(GuildAvailable)
        assert ready_calls == ["ready"]
        assert (available.guild_id, available.guild_name) == (str(guild.id), "PipVault")
        assert available.vanity_code == "pipvault"
        assert available.members is not None
        listed = {m.user_id: m for m in available.members}
        assert str(early.id) in listed and listed[str(early.id)].joined_at is not None

        # A burst: an invite, joins through it, one used up (join, INVITE_DELETE), a leave, a rejoin.
        sim.create_invite(guild, travis, code="once", max_uses=1)
        people = [sim.add_user(f"member{i}") for i in range(6)]
        for person in people[:5]:
            sim.join(guild, person, via="abc123XYZ")
        sim.join(guild, people[5], via="once")
        sim.leave(guild, people[0])
        sim.join(guild, people[0], via="abc123XYZ")
        await seen.wait_for(MemberJoined, 7)

    after = seen.events[seen.events.index(available) + 1 :]
    kinds = [type(e).__name__ for e in after]
    expected = ["InviteCreated"] + ["MemberJoined"] * 6 + ["InviteDeleted", "MemberRemoved", "MemberJoined"]
    assert kinds == expected
    created, deleted = after[0], after[7]
    assert isinstance(created, InviteCreated) and created.invite.code == "once"
    assert created.invite.inviter_id == str(travis.id) and created.invite.max_uses == 1
    assert isinstance(deleted, InviteDeleted) and deleted.code == "once"
    joins = [e for e in after if isinstance(e, MemberJoined)]
    assert [j.member.user_id for j in joins] == [str(p.id) for p in people] + [str(people[0].id)]
    first = joins[0]
    assert first.guild_id == str(guild.id) and first.guild_name == "PipVault"
    assert first.member.username == "member0" and not first.member.bot
    assert isinstance(first.member.joined_at, datetime) and first.member.joined_at.utcoffset() is not None
    assert type(first.member.joined_at) is datetime  # not the library's Timestamp (whose str() is markup)
    assert not first.member.flags & MEMBER_FLAG_DID_REJOIN
    assert joins[-1].member.flags & MEMBER_FLAG_DID_REJOIN
    [removed] = [e for e in after if isinstance(e, MemberRemoved)]
    assert removed.user_id == str(people[0].id)
    assert adapter.overflowed == 0


async def test_an_invite_deleted_by_hand_arrives_with_its_final_use_count(sim: SimServer) -> None:
    from sim.discord_constants import Permission

    guild = sim.add_guild("PipVault")
    blind = sim.add_guild(
        "NoAuditLog", bot_permissions=Permission.INVITE_TRACKER_BOT & ~Permission.VIEW_AUDIT_LOG
    )
    travis = sim.add_user("TravisP")
    async with running_adapter(sim) as (_adapter, seen):
        await seen.wait_for(GuildAvailable, 2)
        for where, code in ((guild, "abc123XYZ"), (blind, "hidden")):
            sim.create_invite(where, travis, code=code)
            sim.join(where, sim.add_user(f"via_{code}"), via=code)
            sim.delete_invite(code, by=travis)
        sentinel = sim.join(blind, sim.add_user("after_both"))  # dispatched after every event above
        await seen.wait_for(MemberJoined, where=lambda e: e.member.user_id == str(sentinel.user.id))
        [final] = seen.of(InviteFinalUses)
    assert (final.guild_id, final.code, final.uses, final.max_uses) == (str(guild.id), "abc123XYZ", 1, 0)
    assert final.inviter_id == str(travis.id) and final.deleted_at is not None
    assert abs((final.at - final.deleted_at).total_seconds()) < 5
    # Without View Audit Log the bot gets no entry: that join stays as the counts leave it.
    assert [e.code for e in seen.of(InviteFinalUses)] == ["abc123XYZ"]


async def test_fetch_invites_reads_uses_inviter_expiry_and_the_vanity_url(sim: SimServer) -> None:
    guild = sim.add_guild("PipVault", vanity_code="pipvault", vanity_uses=2)
    travis, maya = sim.add_user("TravisP"), sim.add_user("MayaK")
    sim.create_invite(guild, travis, code="abc123XYZ")
    sim.create_invite(guild, maya, code="maya2024", max_uses=10, max_age=86400)
    for i in range(3):
        sim.join(guild, sim.add_user(f"t{i}"), via="abc123XYZ")
    sim.join(guild, sim.add_user("v"), via="vanity")
    async with running_adapter(sim, collect=False) as (adapter, _):
        fetched = await adapter.fetch_invites(str(guild.id))
    by_code = {i.code: i for i in fetched.invites}
    assert (by_code["abc123XYZ"].uses, by_code["maya2024"].uses) == (3, 0)
    assert (by_code["abc123XYZ"].inviter_id, by_code["abc123XYZ"].inviter_name) == (str(travis.id), "TravisP")
    assert by_code["maya2024"].max_uses == 10 and by_code["maya2024"].expires_at is not None
    assert by_code["abc123XYZ"].expires_at is None and by_code["abc123XYZ"].created_at is not None
    assert (fetched.vanity_code, fetched.vanity_uses) == ("pipvault", 3)


async def test_a_429_is_waited_out_or_reported_with_its_retry_after(sim: SimServer) -> None:
    guild = sim.add_guild("PipVault")
    sim.create_invite(guild, None, code="abc")
    async with running_adapter(sim, collect=False, fetch_timeout_s=3.0) as (adapter, _):
        await adapter.fetch_invites(str(guild.id))  # learns the bucket
        sim.set_invites_budget(1, window_s=0.6)
        await adapter.fetch_invites(str(guild.id))  # spends the budget
        started = time.monotonic()
        # Over budget: the library waits out the window (before asking, from the headers, or after a 429).
        fetched = await adapter.fetch_invites(str(guild.id))
        waited = time.monotonic() - started
        assert [i.code for i in fetched.invites] == ["abc"] and 0.3 < waited < 2.0

        sim.set_invites_budget(0, window_s=0.2)  # every request refused: the library gives up after three
        with pytest.raises(RateLimited) as limited:
            await adapter.fetch_invites(str(guild.id))
        assert 0 < limited.value.retry_after <= 1.0

        sim.set_invites_budget(0, window_s=30)  # a long wait: our timeout ends it, the 429 is still reported
        adapter.fetch_timeout_s = 1.0
        started = time.monotonic()
        with pytest.raises(RateLimited) as long_wait:
            await adapter.fetch_invites(str(guild.id))
        assert 20 < long_wait.value.retry_after <= 30 and time.monotonic() - started < 2

        sim.set_invites_budget(None)
        sim.set_outage(rest=True)  # 502s: the library retries, then gives up; that is no 429
        adapter.fetch_timeout_s = 0.5
        with pytest.raises(FetchError, match="no answer"):
            await adapter.fetch_invites(str(guild.id))
        sim.set_outage(rest=False)
    assert sim.stats.rate_limited >= 4


async def test_concurrent_fetches_of_two_guilds_under_429s_do_not_break_the_library(sim: SimServer) -> None:
    guilds = [sim.add_guild(name) for name in ("One", "Two")]
    for g in guilds:
        sim.create_invite(g, None)
    async with running_adapter(sim, collect=False) as (adapter, _):
        sim.set_invites_budget(1, window_s=0.3)
        results: list[object] = []

        async def fetch(guild_id: str) -> None:
            try:
                results.append(await adapter.fetch_invites(guild_id))
            except (RateLimited, FetchError) as exc:
                results.append(exc)

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                for _ in range(3):
                    for g in guilds:
                        tg.start_soon(fetch, str(g.id))
    assert len(results) == 6
    assert not any(isinstance(r, FetchError) for r in results), results


async def test_resume_replays_a_missed_join_without_a_resync(sim: SimServer) -> None:
    guild = sim.add_guild("PipVault")
    async with running_adapter(sim) as (_adapter, seen):
        await seen.wait_for(GuildAvailable)
        async with sim.disconnected(resume=True):
            missed = sim.join(guild, sim.add_user("joined-while-away"))
        await sim.wait_resumed()
        [joined] = await seen.wait_for(MemberJoined)
        await anyio.sleep(0.2)
    assert joined.member.user_id == str(missed.id)
    assert seen.of(GatewayDisconnected) == [] and len(seen.of(GuildAvailable)) == 1


async def test_a_new_session_announces_a_gap_and_the_guild_again_with_its_members(sim: SimServer) -> None:
    guild = sim.add_guild("PipVault")
    async with running_adapter(sim) as (_adapter, seen):
        await seen.wait_for(GuildAvailable)
        async with sim.disconnected(resume=False):  # 4007: the session ends, nothing is replayed
            lost = sim.join(guild, sim.add_user("lost-in-the-gap"))
        [gap] = await seen.wait_for(GatewayDisconnected)
        second = (await seen.wait_for(GuildAvailable, 2))[1]
        await sim.invalidate_session()  # INVALID_SESSION: identify again, a third announcement
        await seen.wait_for(GuildAvailable, 3)
        await seen.wait_for(GatewayDisconnected, 2)
    assert seen.of(MemberJoined) == []  # the gateway never sent it...
    assert second.members is not None  # ...but the member list has it
    assert str(lost.id) in {m.user_id for m in second.members}
    assert seen.events.index(gap) < seen.events.index(second)


async def test_a_failed_reconnect_restarts_a_fresh_client_after_a_backoff(sim: SimServer) -> None:
    guild = sim.add_guild("PipVault")
    calls: list[str] = []
    clients: list[object] = []
    async with running_adapter(
        sim,
        on_ready=lambda: calls.append("ready"),
        on_disconnect=lambda: calls.append("disconnect"),
        setups=[clients.append],
    ) as (adapter, seen):
        await seen.wait_for(GuildAvailable)
        sim.set_outage(gateway=True)
        await sim.drop_connection(resume=True)  # the resume's handshake fails: astart() returns
        await seen.wait_for(GatewayDisconnected)
        await anyio.sleep(0.3)  # a few backoff rounds against the outage
        sim.set_outage(gateway=False)
        await seen.wait_for(GuildAvailable, 2, timeout=5)
        sim.join(guild, sim.add_user("after-restart"))
        await seen.wait_for(MemberJoined)
        assert adapter.restarts >= 1 and adapter.client is clients[-1]
        assert calls == ["ready", "disconnect", "ready"]  # readiness follows the connection
    assert len(clients) == adapter.restarts + 1 and len(seen.of(GatewayDisconnected)) == 1


async def test_a_refused_token_is_fatal_not_retried(sim: SimServer) -> None:
    adapter = DiscordAdapter(token="not-the-token", api_base_url=sim.base_url)
    with pytest.raises(ExceptionGroup) as refused:  # anyio's task groups wrap it
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                await tg.start(adapter.run)
    assert refused.group_contains(GatewayFatalError, match="refused", depth=None)
    adapter.events.close()
    assert adapter.restarts == 0
