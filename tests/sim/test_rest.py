"""The simulator's REST answers, checked with a plain HTTP client (shapes, headers, errors, uploads)."""

from __future__ import annotations

import json

import aiohttp
import anyio
import pytest

from sim import Permission, SimServer
from sim.ratelimit import DISCORD_GLOBAL_LIMIT
from tests.sim.conftest import ASYNCIO_ONLY

pytestmark = ASYNCIO_ONLY


def bot_headers(sim: SimServer) -> dict[str, str]:
    return {"Authorization": f"Bot {sim.token}"}


async def test_identity_routes_answer_plain_application_json(
    sim: SimServer, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{sim.base_url}/users/@me", headers=bot_headers(sim)) as response:
        # interactions.py decodes JSON only for exactly this header value
        assert response.headers["Content-Type"] == "application/json"
        me = await response.json()
    assert me["id"] == str(sim.bot_user.id) and me["bot"] is True and me["verified"] is True
    async with http.get(f"{sim.base_url}/oauth2/applications/@me", headers=bot_headers(sim)) as response:
        app = await response.json()
    assert app["id"] == str(sim.application_id)
    async with http.get(f"{sim.base_url}/gateway") as response:
        assert (await response.json())["url"] == f"ws://127.0.0.1:{sim.port}/gateway"


async def test_requests_without_the_bot_token_are_refused(
    sim: SimServer, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{sim.base_url}/users/@me", headers={"Authorization": "Bot wrong"}) as response:
        assert response.status == 401 and (await response.json())["message"] == "401: Unauthorized"
    async with http.get(f"{sim.base_url}/no/such/route", headers=bot_headers(sim)) as response:
        assert response.status == 404
    assert sim.stats.unhandled_requests == ["GET /api/v10/no/such/route"]
    sim.stats.unhandled_requests.clear()


async def test_a_rest_outage_answers_502(sim: SimServer, http: aiohttp.ClientSession) -> None:
    sim.set_outage(rest=True)
    async with http.get(f"{sim.base_url}/users/@me", headers=bot_headers(sim)) as response:
        assert response.status == 502
    sim.set_outage(rest=False)
    async with http.get(f"{sim.base_url}/users/@me", headers=bot_headers(sim)) as response:
        assert response.status == 200


async def test_guild_invites_show_uses_limits_expiry_and_inviter(
    sim: SimServer, http: aiohttp.ClientSession
) -> None:
    guild = sim.add_guild("g")
    staff = sim.add_user("TravisP")
    sim.create_invite(guild, staff, code="abc123XYZ", max_uses=5, max_age=3600)
    sim.join(guild, sim.add_user("john"), via="abc123XYZ")
    async with http.get(f"{sim.base_url}/guilds/{guild.id}/invites", headers=bot_headers(sim)) as response:
        assert response.headers["Content-Type"] == "application/json"
        [invite] = await response.json()
    assert (invite["code"], invite["uses"], invite["max_uses"], invite["max_age"]) == (
        "abc123XYZ",
        1,
        5,
        3600,
    )
    assert invite["inviter"]["id"] == str(staff.id) and invite["expires_at"] is not None
    assert invite["guild"]["id"] == str(guild.id) and invite["channel"]["id"]

    # Without Manage Guild, Discord leaves the counters out.
    guild.bot_permissions = Permission.VIEW_CHANNEL
    async with http.get(f"{sim.base_url}/guilds/{guild.id}/invites", headers=bot_headers(sim)) as response:
        [invite] = await response.json()
    assert "uses" not in invite


async def test_vanity_url_and_member_listing(sim: SimServer, http: aiohttp.ClientSession) -> None:
    guild = sim.add_guild("g", vanity_code="cool", vanity_uses=7)
    for i in range(4):
        sim.join(guild, sim.add_user(f"m{i}"), via="vanity" if i % 2 else None)
    async with http.get(f"{sim.base_url}/guilds/{guild.id}/vanity-url", headers=bot_headers(sim)) as response:
        assert await response.json() == {"code": "cool", "uses": 9}
    url = f"{sim.base_url}/guilds/{guild.id}/members"
    async with http.get(url, params={"limit": "1000"}, headers=bot_headers(sim)) as response:
        everyone = await response.json()
    assert len(everyone) == 6 and all(m["joined_at"] and m["user"]["id"] for m in everyone)
    async with http.get(
        url, params={"limit": "2", "after": everyone[1]["user"]["id"]}, headers=bot_headers(sim)
    ) as r:
        assert [m["user"]["id"] for m in await r.json()] == [m["user"]["id"] for m in everyone[2:4]]
    async with http.get(url, params={"limit": "0"}, headers=bot_headers(sim)) as response:
        assert response.status == 400


async def test_invites_beyond_the_budget_get_429_with_retry_after(
    sim: SimServer, http: aiohttp.ClientSession
) -> None:
    guild = sim.add_guild("g")
    sim.set_invites_budget(1, window_s=0.5)
    url = f"{sim.base_url}/guilds/{guild.id}/invites"
    async with http.get(url, headers=bot_headers(sim)) as response:
        assert response.status == 200
        assert (
            response.headers["X-RateLimit-Limit"] == "1" and response.headers["X-RateLimit-Remaining"] == "0"
        )
        assert response.headers["X-RateLimit-Bucket"]
    async with http.get(url, headers=bot_headers(sim)) as response:
        assert response.status == 429 and response.headers["Content-Type"] == "application/json"
        body = await response.json()
        assert 0 < body["retry_after"] <= 0.5 and body["global"] is False
        assert response.headers["Retry-After"] == "1"
        assert float(response.headers["X-RateLimit-Reset-After"]) == pytest.approx(
            body["retry_after"], abs=0.01
        )
    assert sim.stats.rate_limited == 1
    sim.set_invites_budget(None)
    async with http.get(url, headers=bot_headers(sim)) as response:
        assert response.status == 200 and "X-RateLimit-Limit" not in response.headers


async def test_beyond_discords_global_limit_every_route_gets_a_global_429_but_interactions(
    sim: SimServer, http: aiohttp.ClientSession
) -> None:
    guild = sim.add_guild("g")
    sim.world.commands.put(None, [{"name": "ping", "description": "p"}])
    sim.set_global_budget(3, window_s=0.5)
    routes = [f"/guilds/{guild.id}/invites", f"/guilds/{guild.id}", f"/guilds/{guild.id}/channels"]
    for route in routes:
        async with http.get(f"{sim.base_url}{route}", headers=bot_headers(sim)) as response:
            assert response.status == 200
    for route in (f"/guilds/{guild.id}/vanity-url", "/users/@me"):  # any route: the budget is global
        async with http.get(f"{sim.base_url}{route}", headers=bot_headers(sim)) as response:
            assert response.status == 429
            body = await response.json()
            assert body["global"] is True and 0 < body["retry_after"] <= 0.5
            assert response.headers["X-RateLimit-Global"] == "true"
            assert response.headers["X-RateLimit-Scope"] == "global"
            assert response.headers["Retry-After"] == "1" and "X-RateLimit-Bucket" not in response.headers
    # Interaction responses are not bound by the global limit.
    ping = sim.invoke(guild, guild.owner_id, "ping")
    callback = f"{sim.base_url}/interactions/{ping.id}/{ping.token}/callback"
    async with http.post(callback, json={"type": 4, "data": {"content": "pong"}}) as response:
        assert response.status == 204
    assert sim.stats.globally_rate_limited == 2 and sim.stats.rate_limited == 2
    await anyio.sleep(0.5)  # a new window
    async with http.get(f"{sim.base_url}/users/@me", headers=bot_headers(sim)) as response:
        assert response.status == 200


async def test_the_simulator_starts_with_discords_global_limit(sim: SimServer) -> None:
    assert sim.rest.global_budget is not None and sim.rest.global_budget.limit == DISCORD_GLOBAL_LIMIT == 50


async def test_channel_message_with_attachments_keeps_the_bytes(
    sim: SimServer, http: aiohttp.ClientSession
) -> None:
    guild = sim.add_guild("g")
    join_log = guild.channel_named("join-log")
    form = aiohttp.FormData(quote_fields=False)
    form.add_field("files[0]", b"user_id,code\n1,abc\n", filename="joins.csv", content_type="text/csv")
    payload = {
        "content": "export",
        "attachments": [{"id": 0, "filename": "joins.csv", "description": "all joins"}],
    }
    form.add_field("payload_json", json.dumps(payload))
    url = f"{sim.base_url}/channels/{join_log.id}/messages"
    async with http.post(url, data=form, headers=bot_headers(sim)) as response:
        assert response.status == 200
        message = await response.json()
    assert message["content"] == "export" and message["attachments"][0]["filename"] == "joins.csv"
    [stored] = sim.channel_messages(join_log)
    assert stored.attachments[0].data == b"user_id,code\n1,abc\n"
    assert stored.attachments[0].file.description == "all joins"
    async with http.get(message["attachments"][0]["url"]) as response:
        assert await response.read() == b"user_id,code\n1,abc\n"
    async with http.post(url, json={"content": ""}, headers=bot_headers(sim)) as response:
        assert response.status == 400


async def test_interaction_callbacks_follow_discords_rules(http: aiohttp.ClientSession) -> None:
    async with SimServer.running(interaction_ack_timeout_s=0.3) as sim:
        guild = sim.add_guild("g")
        sim.world.commands.put(None, [{"name": "ping", "description": "p"}])
        owner = guild.owner_id
        first = sim.invoke(guild, owner, "ping")
        callback = f"{sim.base_url}/interactions/{first.id}/{first.token}/callback"
        followup = f"{sim.base_url}/webhooks/{sim.application_id}/{first.token}"
        async with http.post(followup, json={"content": "too early"}) as response:
            assert response.status == 404  # not acknowledged yet
        async with http.post(callback, json={"type": 4, "data": {"content": "pong"}}) as response:
            assert response.status == 204
        async with http.post(callback, json={"type": 4, "data": {"content": "again"}}) as response:
            assert response.status == 400 and (await response.json())["code"] == 40060
        async with http.get(f"{followup}/messages/@original") as response:
            assert (await response.json())["content"] == "pong"
        async with http.post(followup, json={"content": "more", "flags": 64}) as response:
            assert (await response.json())["flags"] == 64
        assert [m.content for m in first.messages] == ["pong", "more"]

        late = sim.invoke(guild, owner, "ping")
        await anyio.sleep(0.35)  # past the acknowledgement deadline
        async with http.post(
            f"{sim.base_url}/interactions/{late.id}/{late.token}/callback", json={"type": 5}
        ) as r:
            assert r.status == 404 and (await r.json())["code"] == 10062
