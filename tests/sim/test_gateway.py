"""The gateway protocol frame by frame, with a hand-driven websocket client."""

from __future__ import annotations

import aiohttp

from sim import Intent, SimServer
from tests.sim.conftest import ASYNCIO_ONLY, GatewayProbe

pytestmark = ASYNCIO_ONLY

ALL_WE_USE = Intent.GUILDS | Intent.GUILD_MEMBERS | Intent.GUILD_INVITES


async def test_hello_heartbeat_identify_ready_and_guild_create(
    sim: SimServer, http: aiohttp.ClientSession
) -> None:
    guild = sim.add_guild("PipVault")
    async with GatewayProbe(http, sim.gateway.ws_url) as gw:
        assert gw.hello == {"op": 10, "d": {"heartbeat_interval": 300}}
        await gw.send(1, None)
        assert await gw.recv() == {"op": 11}
        ready = await gw.identify(sim.token, ALL_WE_USE)
        assert ready["s"] == 1
        assert ready["d"]["user"]["id"] == str(sim.bot_user.id)
        assert ready["d"]["guilds"] == [{"id": str(guild.id), "unavailable": True}]
        assert ready["d"]["resume_gateway_url"] == sim.gateway.ws_url
        created = await gw.dispatch("GUILD_CREATE")
        assert created["s"] == 2 and created["d"]["id"] == str(guild.id)
        assert {c["name"] for c in created["d"]["channels"]} == {"general", "join-log"}
        assert str(sim.bot_user.id) in {m["user"]["id"] for m in created["d"]["members"]}
        assert sim.is_identified()
    assert sim.stats.heartbeats == 1 and sim.stats.heartbeat_acks == 1 and sim.stats.identifies == 1


async def test_events_respect_intents_and_permissions(sim: SimServer, http: aiohttp.ClientSession) -> None:
    guild = sim.add_guild("g")
    blind = sim.add_guild("no-manage-channels", bot_permissions=0)
    async with GatewayProbe(http, sim.gateway.ws_url) as gw:
        await gw.identify(sim.token, Intent.GUILDS | Intent.GUILD_INVITES)  # no GUILD_MEMBERS
        sim.join(guild, sim.add_user("unseen"))
        sim.create_invite(blind, None, code="hidden")  # the bot may not see invite events there
        sim.create_invite(guild, None, code="seen")
        created = await gw.dispatch("INVITE_CREATE")
        assert created["d"]["code"] == "seen"
        # the member join and the other guild's invite were never queued for this session
        assert sim.gateway.live_sessions()[0].seq == created["s"]


async def test_resume_replays_missed_events_then_resumed(sim: SimServer, http: aiohttp.ClientSession) -> None:
    guild = sim.add_guild("g")
    # closing with 4000 (not 1000) keeps the session resumable, as on Discord
    async with GatewayProbe(http, sim.gateway.ws_url, close_code=4000) as gw:
        ready = await gw.identify(sim.token, ALL_WE_USE)
        await gw.dispatch("GUILD_CREATE")
        session_id, last_seq = ready["d"]["session_id"], 2
    # disconnected: these happen while no connection is attached to the session
    sim.join(guild, sim.add_user("missed-1"))
    sim.join(guild, sim.add_user("missed-2"))
    async with GatewayProbe(http, sim.gateway.ws_url) as gw:
        await gw.send(6, {"token": sim.token, "session_id": session_id, "seq": last_seq})
        replayed = [await gw.recv(), await gw.recv(), await gw.recv()]
    assert [(f["t"], f["s"]) for f in replayed] == [
        ("GUILD_MEMBER_ADD", 3),
        ("GUILD_MEMBER_ADD", 4),
        ("RESUMED", 5),
    ]
    assert replayed[0]["d"]["user"]["username"] == "missed-1"
    assert sim.stats.resumes[-1].replayed == 2


async def test_resume_of_an_unknown_session_gets_invalid_session(
    sim: SimServer, http: aiohttp.ClientSession
) -> None:
    async with GatewayProbe(http, sim.gateway.ws_url) as gw:
        await gw.send(6, {"token": sim.token, "session_id": "nope", "seq": 3})
        assert await gw.recv() == {"op": 9, "d": False}
    assert sim.stats.failed_resumes == 1


async def test_invalidate_session_sends_op_9_and_ends_the_session(
    sim: SimServer, http: aiohttp.ClientSession
) -> None:
    sim.add_guild("g")
    async with GatewayProbe(http, sim.gateway.ws_url) as gw:
        ready = await gw.identify(sim.token, ALL_WE_USE)
        await gw.dispatch("GUILD_CREATE")
        assert await sim.invalidate_session() == 1
        assert await gw.recv() == {"op": 9, "d": False}
    async with GatewayProbe(http, sim.gateway.ws_url) as gw:
        await gw.send(6, {"token": sim.token, "session_id": ready["d"]["session_id"], "seq": 2})
        assert await gw.recv() == {"op": 9, "d": False}


async def test_bad_token_and_disallowed_intents_close_the_connection(http: aiohttp.ClientSession) -> None:
    async with SimServer.running(privileged_intents_enabled=False) as sim:
        async with GatewayProbe(http, sim.gateway.ws_url) as gw:
            await gw.send(2, {"token": "wrong", "intents": 1, "properties": {}})
            assert await gw.recv() == {"close": 4004}
        async with GatewayProbe(http, sim.gateway.ws_url) as gw:
            await gw.send(2, {"token": sim.token, "intents": ALL_WE_USE, "properties": {}})
            assert await gw.recv() == {"close": 4014}


async def test_drop_connection_closes_with_4000(sim: SimServer, http: aiohttp.ClientSession) -> None:
    async with GatewayProbe(http, sim.gateway.ws_url) as gw:
        await gw.identify(sim.token, ALL_WE_USE)
        assert await sim.drop_connection(resume=True) == 1
        frame = await gw.recv()
        while "close" not in frame:
            frame = await gw.recv()
        assert frame == {"close": 4000}


async def test_request_guild_members_answers_with_chunks(sim: SimServer, http: aiohttp.ClientSession) -> None:
    guild = sim.add_guild("g")
    for i in range(3):
        sim.join(guild, sim.add_user(f"member{i}"))
    async with GatewayProbe(http, sim.gateway.ws_url) as gw:
        await gw.identify(sim.token, ALL_WE_USE)
        await gw.send(8, {"guild_id": str(guild.id), "query": "member", "limit": 0, "nonce": "n1"})
        chunk = await gw.dispatch("GUILD_MEMBERS_CHUNK")
    assert chunk["d"]["nonce"] == "n1" and chunk["d"]["chunk_count"] == 1
    assert sorted(m["user"]["username"] for m in chunk["d"]["members"]) == ["member0", "member1", "member2"]
