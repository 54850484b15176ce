"""The real interactions.py 5.16 client against the simulator: login, events, invites, slash commands with
deferred replies and files, buttons, RESUME, INVALID_SESSION and 429 handling.

Each test starts its own client with `running_client` (tests/sim/conftest.py) and stops it by cancelling
`astart()`. asyncio only: interactions.py does not run on trio.
"""

from __future__ import annotations

import io
import time
from typing import Any

import aiohttp
import anyio
from interactions import (
    ActionRow,
    Button,
    ButtonStyle,
    ComponentContext,
    Embed,
    File,
    Member,
    OptionType,
    Permissions,
    SlashContext,
    User,
    component_callback,
    slash_command,
    slash_option,
)
from interactions.api.events import GuildJoin, InviteDelete, MemberAdd, MemberRemove, Ready, Resume, Startup

from sim import MemberFlag, SimServer
from tests.sim.conftest import ASYNCIO_ONLY, EventLog, running_client

pytestmark = ASYNCIO_ONLY


async def test_login_fires_startup_and_ready_and_heartbeats_are_acked(sim: SimServer) -> None:
    guild = sim.add_guild("PipVault")
    log = EventLog()
    started = time.monotonic()
    async with running_client(sim, listeners=log.listeners(Startup, Ready, GuildJoin)) as client:
        await log.wait_for(Ready)
        startup_s = time.monotonic() - started
        assert len(log.events[Startup]) == 1
        assert client.user.id == sim.bot_user.id and client.app.id == sim.application_id
        assert [g.id for g in client.guilds] == [guild.id]
        assert client.get_channel(guild.channel_named("join-log").id) is not None
        await sim.wait_until(lambda: sim.stats.heartbeat_acks >= 2, 5, "two acknowledged heartbeats")
        later = sim.add_guild("Added later")  # the bot joins another guild: GUILD_CREATE while connected
        joined_guilds = await log.wait_for(GuildJoin, 2)
        assert [int(e.guild_id) for e in joined_guilds] == [guild.id, later.id]
        assert client.get_guild(later.id) is not None
    assert startup_s < 3, f"start-up took {startup_s:.2f} s"
    assert sim.stats.identifies == 1 and sim.stats.connections_opened == 1


async def test_join_leave_rejoin_and_max_uses_reach_listeners(sim: SimServer) -> None:
    guild = sim.add_guild("PipVault")
    staff = sim.add_user("TravisP")
    sim.create_invite(guild, staff, code="once", max_uses=1)
    log = EventLog()
    async with running_client(sim, listeners=log.listeners(MemberAdd, MemberRemove, InviteDelete)):
        john = sim.add_user("john_doe")
        sim.join(guild, john, via="once")
        [joined] = await log.wait_for(MemberAdd)
        assert joined.member.id == john.id and int(joined.guild_id) == guild.id
        assert joined.member.joined_at is not None and not joined.member.flags & MemberFlag.DID_REJOIN
        [deleted] = await log.wait_for(InviteDelete)  # the invite's only use was spent
        assert deleted.invite.code == "once"

        sim.leave(guild, john)
        [left] = await log.wait_for(MemberRemove)
        assert left.member.id == john.id
        sim.join(guild, john)
        rejoined = (await log.wait_for(MemberAdd, 2))[1]
        assert rejoined.member.flags & MemberFlag.DID_REJOIN


async def test_fetching_invites_through_the_client_gives_uses_and_inviter(sim: SimServer) -> None:
    guild = sim.add_guild("PipVault", vanity_code="pipvault", vanity_uses=2)
    travis, maya = sim.add_user("TravisP"), sim.add_user("MayaK")
    sim.create_invite(guild, travis, code="abc123XYZ")
    sim.create_invite(guild, maya, code="maya2024", max_uses=10, max_age=86400)
    for i in range(3):
        sim.join(guild, sim.add_user(f"via-travis-{i}"), via="abc123XYZ")
    sim.join(guild, sim.add_user("via-maya"), via="maya2024")
    sim.join(guild, sim.add_user("via-vanity"), via="vanity")
    async with running_client(sim) as client:
        cached_guild = client.get_guild(guild.id)
        assert cached_guild is not None
        invites = {i.code: i for i in await cached_guild.fetch_invites()}
        vanity = await client.http.get_guild_vanity_url(guild.id)
        members = await client.http.list_members(guild.id, limit=1000)
    assert (invites["abc123XYZ"].uses, invites["maya2024"].uses) == (3, 1)
    assert invites["abc123XYZ"]._inviter_id == travis.id and invites["maya2024"]._inviter_id == maya.id
    assert invites["abc123XYZ"].inviter is not None and invites["abc123XYZ"].inviter.username == "TravisP"
    assert invites["maya2024"].max_uses == 10 and invites["maya2024"].expires_at is not None
    assert vanity == {"code": "pipvault", "uses": 3}
    assert len(members) == 7  # owner, bot and five who joined


#: What each /lookup_user_invite run saw of its context, for the test to check.
SEEN_BY_LOOKUP: list[dict[str, Any]] = []


@slash_command(name="lookup_user_invite", description="Who invited this member")
@slash_option(name="user", description="the member", opt_type=OptionType.USER, required=True)
async def lookup_user_invite(ctx: SlashContext, user: Member | User) -> None:
    SEEN_BY_LOOKUP.append(
        {
            "user_type": type(user).__name__,
            "user_id": user.id,
            "manage_guild": Permissions.MANAGE_GUILD in ctx.author_permissions,
            "guild_id": ctx.guild_id,
            "channel_id": ctx.channel_id,
            "app_can_manage_guild": Permissions.MANAGE_GUILD in ctx.app_permissions,
        }
    )
    await ctx.defer(ephemeral=True)
    embed = Embed(title="User Join Details Found", description=f"<@{user.id}> joined through abc123XYZ")
    csv = io.BytesIO(b"user_id,invite_code\n" + str(user.id).encode() + b",abc123XYZ\n")
    await ctx.send(embed=embed, file=File(csv, file_name="join.csv"))
    await ctx.send("Data source: the write-ahead log", ephemeral=True)


async def test_slash_command_deferred_reply_and_follow_up_are_recorded(sim: SimServer) -> None:
    SEEN_BY_LOOKUP.clear()
    guild = sim.add_guild("PipVault")
    admin = sim.add_user("admin")
    sim.add_member(guild, admin, permissions=int(Permissions.MANAGE_GUILD | Permissions.VIEW_CHANNEL))
    john, gone = sim.add_user("john_doe"), sim.add_user("left_already")
    sim.join(guild, john)
    async with running_client(sim, commands=[lookup_user_invite]):
        [synced] = sim.registered_commands[None]
        assert synced["name"] == "lookup_user_invite" and synced["id"]
        assert synced["options"][0]["type"] == OptionType.USER

        interaction = sim.invoke(guild, admin, "lookup_user_invite", {"user": john})
        answer = await sim.answer(interaction, timeout=5)
        await sim.wait_answers(interaction, 3)

        interaction_for_gone = sim.invoke(guild, admin, "lookup_user_invite", {"user": gone})
        await sim.answer(interaction_for_gone, timeout=5)

    deferral, edit, followup = sim.answers(interaction)
    assert deferral.callback_type == 5 and deferral.body["data"]["flags"] == 64
    assert answer is edit and edit.kind == "edit"
    assert edit.embeds[0]["title"] == "User Join Details Found"
    [upload] = edit.files
    assert (
        upload.filename == "join.csv"
        and upload.data == f"user_id,invite_code\n{john.id},abc123XYZ\n".encode()
    )
    assert followup.kind == "followup" and followup.content == "Data source: the write-ahead log"
    original, follow_message = interaction.messages
    assert original.ephemeral and original.attachments[0].data == upload.data and follow_message.ephemeral

    present, departed = SEEN_BY_LOOKUP
    assert (present["user_type"], present["user_id"]) == ("Member", john.id)
    assert (departed["user_type"], departed["user_id"]) == ("User", gone.id)  # someone who left
    assert present["manage_guild"] and present["app_can_manage_guild"]
    assert present["guild_id"] == guild.id and present["channel_id"] == guild.system_channel_id


@slash_command(name="view_invite_logs", description="Recent joins, a page at a time")
async def view_invite_logs(ctx: SlashContext) -> None:
    next_page = Button(style=ButtonStyle.PRIMARY, label="Next", custom_id="logs:page:2")
    await ctx.send(embed=Embed(title="Joins, page 1"), components=[ActionRow(next_page)])


@component_callback("logs:page:2")
async def second_page(ctx: ComponentContext) -> None:
    back = Button(style=ButtonStyle.SECONDARY, label="Back", custom_id="logs:page:1")
    await ctx.edit_origin(embed=Embed(title="Joins, page 2"), components=[ActionRow(back)])


async def test_button_click_turns_the_page(sim: SimServer) -> None:
    guild = sim.add_guild("PipVault")
    async with running_client(sim, commands=[view_invite_logs, second_page]):
        command = sim.invoke(guild, guild.owner_id, "view_invite_logs")
        first = await sim.answer(command)
        assert first.callback_type == 4 and first.embeds[0]["title"] == "Joins, page 1"
        click = sim.click(first, "logs:page:2", guild.owner_id)
        turned = await sim.answer(click)
    assert turned.callback_type == 7
    [page] = command.messages
    assert page.embeds[0]["title"] == "Joins, page 2"
    assert [c["custom_id"] for c in page.iter_components() if "custom_id" in c] == ["logs:page:1"]


async def test_resume_after_a_dropped_connection_replays_a_missed_join(sim: SimServer) -> None:
    guild = sim.add_guild("PipVault")
    log = EventLog()
    async with running_client(sim, listeners=log.listeners(MemberAdd, Resume)):
        async with sim.disconnected(resume=True):
            missed = sim.join(guild, sim.add_user("joined-while-away"))
        await sim.wait_resumed()
        [joined] = await log.wait_for(MemberAdd)
        await log.wait_for(Resume)
    assert joined.member.id == missed.id
    assert sim.stats.resumes[0].replayed == 1 and sim.stats.identifies == 1


async def test_invalid_session_leads_to_a_fresh_identify_and_ready(sim: SimServer) -> None:
    guild = sim.add_guild("PipVault")
    log = EventLog()
    async with running_client(sim, listeners=log.listeners(Startup, Ready, MemberAdd)):
        await log.wait_for(Ready)
        await sim.invalidate_session()
        await sim.wait_identifies(2)
        await log.wait_for(Ready, 2)
        sim.join(guild, sim.add_user("after-reidentify"))
        await log.wait_for(MemberAdd)
    assert len(log.events[Startup]) == 1  # Ready again, not Startup
    assert sim.stats.resumes == []


async def test_a_dropped_session_a_zombie_connection_and_op_7_are_recovered_from(sim: SimServer) -> None:
    sim.add_guild("PipVault")
    log = EventLog()
    async with running_client(sim, listeners=log.listeners(Ready, Resume)):
        await sim.drop_connection(resume=False)  # close 4007: the session is gone, identify again
        await sim.wait_identifies(2)
        await log.wait_for(Ready, 2)
        sim.set_heartbeat_acks(False)  # the client notices unanswered heartbeats and reconnects
        await sim.wait_resumed(timeout=5)
        await log.wait_for(Resume)
        sim.set_heartbeat_acks(True)
        await sim.request_reconnect()  # op 7: reconnect to resume_gateway_url and resume
        await sim.wait_resumed(2, timeout=5)
        await log.wait_for(Resume, 2)
    assert sim.stats.identifies == 2 and sim.stats.reconnects_requested == 1


async def test_a_gateway_outage_makes_astart_return_after_the_failed_reconnect(sim: SimServer) -> None:
    sim.add_guild("PipVault")
    async with running_client(sim) as client:
        sim.set_outage(gateway=True)
        await sim.drop_connection(resume=True)
        # Observed with 5.16: the reconnect's failed handshake ends astart() quietly; it does not retry.
        with anyio.fail_after(5):
            await client.astart_returned.wait()  # type: ignore[attr-defined]
    assert sim.stats.connections_opened == 1


async def test_a_429_on_invites_is_waited_out(sim: SimServer, http: aiohttp.ClientSession) -> None:
    guild = sim.add_guild("PipVault")
    sim.create_invite(guild, None, code="abc")
    async with running_client(sim) as client:
        sim.set_invites_budget(1, window_s=0.6)
        # Someone else sharing the token spends the budget, so the client's request meets a 429.
        url = f"{sim.base_url}/guilds/{guild.id}/invites"
        async with http.get(url, headers={"Authorization": f"Bot {sim.token}"}) as response:
            assert response.status == 200
        started = time.monotonic()
        with anyio.fail_after(5):
            invites = await client.http.get_guild_invites(guild.id)
        waited = time.monotonic() - started
    assert [i["code"] for i in invites] == ["abc"]
    assert sim.stats.rate_limited == 1
    assert 0.4 < waited < 2.0, f"the client should wait out retry_after (~0.6 s), waited {waited:.2f} s"


async def test_three_429s_in_a_row_make_the_client_return_none(sim: SimServer) -> None:
    guild = sim.add_guild("PipVault")
    async with running_client(sim) as client:
        sim.set_invites_budget(0, window_s=0.2)
        with anyio.fail_after(5):
            invites = await client.http.get_guild_invites(guild.id)
    # Observed with interactions.py 5.16: no exception, just None after its three attempts.
    assert invites is None
    assert sim.stats.rate_limited == 3
