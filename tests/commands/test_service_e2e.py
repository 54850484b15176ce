"""The real service behind the real client: the simulator's joins become durable records through the adapter,
the attribution actor, the WAL and the projection, and the staff commands answer from them; the join-log
channel announces each join once durable; a RESUME replays a missed join into a record; an INVALID_SESSION
makes the service fetch the invites again; a 429 on the invites route is waited out.

asyncio only (interactions.py); see conftest.py.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import anyio.abc
import attrs
import pytest
from interactions import Permissions

from commands import JoinLogPoster, StaffCommands, register
from service.app import Service
from service.attribution_actor import Durable
from service.discord_adapter import DiscordAdapter
from service.health import DISCORD
from service.records import AttributionKind
from sim import Answer, SimGuild, SimServer, SimUser
from tests.commands.support import service_behind_client

pytestmark = pytest.mark.anyio

STAFF_PERMS = int(Permissions.MANAGE_GUILD | Permissions.VIEW_CHANNEL | Permissions.SEND_MESSAGES)


@attrs.define
class Bot:
    sim: SimServer
    guild: SimGuild
    admin: SimUser
    travis: SimUser
    service: Service
    adapter: DiscordAdapter
    staff: StaffCommands
    poster: JoinLogPoster

    async def run(self, command: str, options: dict[str, Any] | None = None) -> Answer:
        interaction = self.sim.invoke(self.guild, self.admin, command, options or {})
        return await self.sim.answer(interaction, timeout=10)

    async def recorded(self, user: SimUser, timeout: float = 10.0) -> dict[str, str]:
        """The user's lookup once their join is recorded (each ask sees all that is durable)."""
        with anyio.fail_after(timeout):
            while True:
                answer = await self.run("lookup_user_invite", {"user": user})
                if answer.embeds and answer.embeds[0]["title"] != "No join recorded":
                    return {f["name"]: f["value"] for f in answer.embeds[0]["fields"]}
                await anyio.sleep(0.05)

    def invite_fetches(self) -> int:
        return _invite_fetches(self.sim)


def _invite_fetches(sim: SimServer) -> int:
    return sum(1 for r in sim.rest.requests if r.method == "GET" and r.path.endswith("/invites"))


@pytest.fixture
async def bot(sim: SimServer, tmp_path: Path) -> AsyncIterator[Bot]:
    guild = sim.add_guild("PipVault")
    admin, travis = sim.add_user("admin"), sim.add_user("TravisP")
    sim.add_member(guild, admin, permissions=STAFF_PERMS)
    sim.add_member(guild, travis, permissions=STAFF_PERMS)
    sim.create_invite(guild, travis, code="abc123XYZ")
    durable_send, durable_receive = anyio.create_memory_object_stream[Durable](256)
    service, adapter = service_behind_client(sim, tmp_path / "data", durable_send)
    adapter.on_ready = lambda: service.readiness.mark_ready(DISCORD)
    adapter.on_disconnect = lambda: service.readiness.mark_not_ready(DISCORD, "gateway disconnected")
    staff = register(adapter, service.ledger)
    poster = JoinLogPoster(
        adapter, str(guild.channel_named("join-log").id), durable_receive, min_interval_s=0.05
    )

    async def run_service(*, task_status: anyio.abc.TaskStatus[None]) -> None:
        async with durable_send:  # closed when the service ends: the poster then ends too
            await service.run(task_status=task_status)

    async with anyio.create_task_group() as tg:
        with anyio.fail_after(15):
            await tg.start(run_service)
        tg.start_soon(poster.run)
        assert service.readiness.ready
        # The first invite snapshot is the baseline every later join is compared with.
        await sim.wait_until(lambda: _invite_fetches(sim) >= 1, 5, "the first invite snapshot")
        await anyio.sleep(0.2)  # settled (FAST.gateway_latency is 50 ms)
        try:
            yield Bot(sim, guild, admin, travis, service, adapter, staff, poster)
        finally:
            service.stop()  # the orderly stop, also when the test failed
    assert staff.failures == 0, "a command failed (see the log)"


async def test_joins_become_records_the_commands_answer_from(bot: Bot) -> None:
    sim = bot.sim
    link = "https://vantage.com/ref/travis"
    saved = await bot.run("staff_ib set", {"staff": bot.travis, "ib_link": link, "ib_code": "TRAVIS123"})
    assert "Saved the IB profile of TravisP" in (saved.content or "")
    john = sim.add_user("john_doe")
    sim.join(bot.guild, john, via="abc123XYZ")
    got = await bot.recorded(john)
    assert "Invite Code: `abc123XYZ`" in got["🔗 Invite Details"]
    assert f"Staff: TravisP (<@{bot.travis.id}>)" in got["👨‍💼 Referring Staff Member"]
    assert f"IB Link: {link}" in got["👨‍💼 Referring Staff Member"]
    assert got["🧭 Attribution"].startswith(f"**{AttributionKind.EXACT.value}**")
    assert got["💾 Proof"].startswith("Write-ahead log record LSN") and ".wal`" in got["💾 Proof"]

    channel = bot.guild.channel_named("join-log")
    message = await sim.wait_channel_message(channel, lambda m: "john" in m.content, timeout=5)
    assert "joined via code `abc123XYZ` (staff TravisP)" in message.content

    logs = await bot.run("view_invite_logs", {"invite_code": "abc123XYZ"})
    assert "john" in logs.embeds[0]["description"]
    export = await bot.run("export_invite_logs")
    [upload] = export.files
    rows = list(csv.DictReader(io.StringIO(upload.data.decode("utf-8-sig"))))
    assert [(r["user_id"], r["invite_code"], r["staff_id"]) for r in rows] == [
        (str(john.id), "abc123XYZ", str(bot.travis.id))
    ]
    synced = await bot.run("sync_member_invites")
    assert "✅ `abc123XYZ` (TravisP): Discord **1**, ledger **1**" in synced.embeds[0]["description"]
    status = await bot.run("ledger_status")
    fields = {f["name"]: f["value"] for f in status.embeds[0]["fields"]}
    assert int(fields["Durable LSN"]) >= 2 and fields["Applied LSN"].startswith(fields["Durable LSN"])


async def test_a_join_through_an_invite_deleted_before_any_fetch_is_credited_from_the_audit_log(
    bot: Bot,
) -> None:
    # TravisP deletes his invite the moment jane uses it: no invite fetch ever counts her use. The audit log
    # entry of the deletion (GUILD_AUDIT_LOG_ENTRY_CREATE) carries the invite's final use count.
    sim = bot.sim
    jane = sim.add_user("jane_fast")
    fetches = bot.invite_fetches()
    sim.join(bot.guild, jane, via="abc123XYZ")
    sim.delete_invite("abc123XYZ", by=bot.travis)
    got = await bot.recorded(jane)
    assert bot.invite_fetches() > fetches  # the core did look, and found the invite gone
    assert "Invite Code: `abc123XYZ`" in got["🔗 Invite Details"]
    assert f"Staff: TravisP (<@{bot.travis.id}>)" in got["👨‍💼 Referring Staff Member"]
    assert got["🧭 Attribution"].startswith(f"**{AttributionKind.EXACT.value}**")


async def test_a_join_missed_while_away_is_replayed_by_resume_and_recorded(bot: Bot) -> None:
    async with bot.sim.disconnected(resume=True):
        away = bot.sim.join(bot.guild, bot.sim.add_user("joined_while_away"), via="abc123XYZ")
    await bot.sim.wait_resumed()
    got = await bot.recorded(away.user)
    assert "Invite Code: `abc123XYZ`" in got["🔗 Invite Details"]


async def test_invalid_session_refetches_invites(bot: Bot) -> None:
    before = bot.invite_fetches()
    await bot.sim.invalidate_session()
    await bot.sim.wait_identifies(2)
    with anyio.fail_after(10):
        while bot.invite_fetches() == before:  # every Ready re-snapshots the invites
            await anyio.sleep(0.05)
    late = bot.sim.add_user("after_the_new_session")
    bot.sim.join(bot.guild, late, via="abc123XYZ")
    got = await bot.recorded(late)
    assert "Invite Code: `abc123XYZ`" in got["🔗 Invite Details"]


async def test_a_429_on_the_invites_route_is_waited_out(bot: Bot) -> None:
    bot.sim.set_invites_budget(1, window_s=1.0)
    # Someone else sharing the token spends the budget, so the service's own fetch meets a 429.
    url = f"{bot.sim.base_url}/guilds/{bot.guild.id}/invites"
    async with aiohttp.ClientSession() as http:
        async with http.get(url, headers={"Authorization": f"Bot {bot.sim.token}"}) as response:
            assert response.status == 200
    john = bot.sim.add_user("john_doe")
    bot.sim.join(bot.guild, john, via="abc123XYZ")
    got = await bot.recorded(john, timeout=15)
    assert bot.sim.stats.rate_limited >= 1
    assert "Invite Code: `abc123XYZ`" in got["🔗 Invite Details"]  # decided once the wait was over


async def test_an_ambiguous_join_settled_by_hand_credits_the_staff_member_everywhere(bot: Bot) -> None:
    sim = bot.sim
    hank = sim.add_user("HelperHank")
    sim.add_member(bot.guild, hank, permissions=STAFF_PERMS)
    sim.create_invite(bot.guild, hank, code="hank42")
    await anyio.sleep(0.3)  # the INVITE_CREATE is in
    # Two members join at the same moment through different invites: one fetch counts both uses, so
    # neither join can be told apart. The bot credits nobody and lists both codes.
    amy, ben = sim.add_user("amy_fx"), sim.add_user("ben_fx")
    sim.join(bot.guild, amy, via="abc123XYZ")
    sim.join(bot.guild, ben, via="hank42")
    got = await bot.recorded(amy)
    assert got["🧭 Attribution"].startswith(f"**{AttributionKind.AMBIGUOUS.value}**")
    assert "No staff member is credited" in got["👨‍💼 Referring Staff Member"]

    # Amy shows staff the link she used. A code the counts rule out is refused, and changes nothing.
    refused = await bot.run("settle_join", {"user": amy, "invite_code": "zzz999", "reason": "she said so"})
    assert "allow only `abc123XYZ`, `hank42`" in (refused.content or "")
    settled = await bot.run(
        "settle_join",
        {
            "user": amy,
            "invite_code": "https://discord.gg/abc123XYZ",
            "reason": "screenshot of the link in her DMs",
        },
    )
    assert "Settled: the join of" in (settled.content or "")
    assert f"credited to TravisP (<@{bot.travis.id}>)" in (settled.content or "")
    got = await bot.recorded(amy)
    assert f"Staff: TravisP (<@{bot.travis.id}>)" in got["👨‍💼 Referring Staff Member"]
    assert "**Settled by hand** by admin" in got["🧭 Attribution"]
    assert "screenshot of the link in her DMs" in got["🧭 Attribution"]
    assert got["🧭 Attribution"].startswith(f"**{AttributionKind.AMBIGUOUS.value}**")  # the bot's verdict

    export = await bot.run("export_invite_logs")
    rows = {r["user_id"]: r for r in csv.DictReader(io.StringIO(export.files[0].data.decode("utf-8-sig")))}
    assert (rows[str(amy.id)]["invite_code"], rows[str(amy.id)]["staff_id"]) == (
        "abc123XYZ",
        str(bot.travis.id),
    )
    assert rows[str(ben.id)]["staff_id"] == ""  # still ambiguous
    synced = await bot.run("sync_member_invites")
    assert "`abc123XYZ` (TravisP): Discord **1**, ledger **1**" in synced.embeds[0]["description"]
    channel = bot.guild.channel_named("join-log")  # announced like the joins, without the reason
    message = await sim.wait_channel_message(channel, lambda m: "was settled by" in m.content, timeout=5)
    assert f"<@{amy.id}>" in message.content and "code `abc123XYZ` (staff TravisP)" in message.content
    assert "screenshot" not in message.content

    # A join the bot credited itself is not anyone's to settle.
    carl = sim.add_user("carl_fx")
    sim.join(bot.guild, carl, via="abc123XYZ")
    await bot.recorded(carl)
    refused = await bot.run("settle_join", {"user": carl, "invite_code": "hank42", "reason": "he says so"})
    assert "as **exact**: decided by the invite counts" in (refused.content or "")


async def test_erase_user_data_blanks_names_and_keeps_counts(bot: Bot) -> None:
    sim = bot.sim
    jane = sim.add_user("jane_private")
    sim.join(bot.guild, jane, via="abc123XYZ")
    await bot.recorded(jane)
    refused = await bot.run("erase_user_data", {"user": jane, "confirm": "yes"})
    assert "Nothing erased" in (refused.content or "")
    done = await bot.run("erase_user_data", {"user": jane, "confirm": "ERASE"})
    assert f"Erased the personal data of <@{jane.id}>" in (done.content or "")
    export = await bot.run("export_invite_logs")
    [upload] = export.files
    rows = list(csv.DictReader(io.StringIO(upload.data.decode("utf-8-sig"))))
    text = upload.data.decode("utf-8-sig")
    assert "jane_private" not in text and str(jane.id) not in text  # name and id are gone
    [row] = [r for r in rows if not r["user_id"]]
    assert (row["invite_code"], row["staff_id"]) == ("abc123XYZ", str(bot.travis.id))  # counts survive
    synced = await bot.run("sync_member_invites")
    assert "Discord **1**, ledger **1**" in synced.embeds[0]["description"]
