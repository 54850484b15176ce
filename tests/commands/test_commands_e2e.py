"""Every staff command invoked through INTERACTION_CREATE on the simulator, answered by the real
interactions.py client through `DiscordAdapter`, with the projection-backed ledger of `fakes.py`.

Checked on what Discord received: the deferral (ephemeral), then the answer's embeds, files and buttons.
asyncio only (interactions.py); see conftest.py.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
import pytest
from interactions import Permissions

from commands import StaffCommands, register
from service.discord_adapter import DiscordAdapter
from service.records import AttributionKind, MemberLeft, StaffIbSet
from sim import Answer, SimGuild, SimInteraction, SimServer, SimUser
from tests.commands.fakes import ProjectionLedger, join
from tests.commands.support import running_adapter

pytestmark = pytest.mark.anyio

STAFF_PERMS = int(Permissions.MANAGE_GUILD | Permissions.VIEW_CHANNEL | Permissions.SEND_MESSAGES)
MEMBER_PERMS = int(Permissions.VIEW_CHANNEL | Permissions.SEND_MESSAGES)


@attrs.define
class World:
    sim: SimServer
    guild: SimGuild
    admin: SimUser
    member: SimUser
    travis: SimUser
    john: SimUser
    ledger: ProjectionLedger
    staff: StaffCommands
    adapter: DiscordAdapter

    @property
    def gid(self) -> str:
        return str(self.guild.id)

    async def run(
        self, command: str, options: dict[str, Any] | None = None, *, by: SimUser | None = None
    ) -> Answer:
        interaction = self.sim.invoke(self.guild, by or self.admin, command, options or {})
        answer = await self.sim.answer(interaction, timeout=5)
        self.check_deferred(interaction)
        return answer

    def check_deferred(self, interaction: SimInteraction) -> None:
        first = self.sim.answers(interaction)[0]
        assert first.callback_type == 5 and first.ephemeral, "deferred, ephemeral, before anything else"


@pytest.fixture
async def world(sim: SimServer) -> AsyncIterator[World]:
    guild = sim.add_guild("PipVault", vanity_code="pipvault")
    admin, member = sim.add_user("admin"), sim.add_user("plain_member")
    travis, john = sim.add_user("TravisP"), sim.add_user("john_doe")
    sim.add_member(guild, admin, permissions=STAFF_PERMS)
    sim.add_member(guild, member, permissions=MEMBER_PERMS)
    sim.add_member(guild, travis, permissions=STAFF_PERMS)
    sim.create_invite(guild, travis, code="abc123XYZ")
    sim.join(guild, john, via="abc123XYZ")
    ledger = ProjectionLedger()
    gid, tid = str(guild.id), str(travis.id)
    ledger.append(join(str(john.id), "john_doe", staff=(tid, "TravisP"), guild_id=gid, uses=(0, 1)))
    adapter = DiscordAdapter(token=sim.token, api_base_url=sim.base_url)
    staff = register(adapter, ledger, page_size=3)
    async with running_adapter(sim, adapter=adapter, collect=False):
        yield World(sim, guild, admin, member, travis, john, ledger, staff, adapter)
    assert staff.failures == 0, "a handler failed (see the log)"


async def test_commands_are_synced_guild_only_for_manage_server(world: World) -> None:
    synced = {c["name"]: c for c in world.sim.registered_commands[None]}
    expected = [
        "erase_user_data",
        "export_invite_logs",
        "ledger_status",
        "lookup_user_invite",
        "settle_join",
        "staff_ib",
        "sync_member_invites",
    ]
    assert sorted(synced) == sorted([*expected, "view_invite_logs"])
    for command in synced.values():
        assert command["default_member_permissions"] == str(int(Permissions.MANAGE_GUILD))
        assert command["contexts"] == [0]  # guild only, never in DMs
    assert [o["name"] for o in synced["staff_ib"]["options"]] == ["set", "show", "remove"]
    settle = {o["name"]: o for o in synced["settle_join"]["options"]}
    assert [name for name, o in settle.items() if o.get("required")] == ["user", "invite_code", "reason"]
    assert settle["join_lsn"]["type"] == 4 and settle["join_lsn"]["min_value"] == 1  # INTEGER, from 1


async def test_lookup_gives_the_brief_answer_for_a_member_someone_who_left_and_a_stranger(
    world: World,
) -> None:
    world.ledger.append(
        StaffIbSet(
            datetime.now(UTC),
            world.gid,
            str(world.travis.id),
            "TravisP",
            "https://vantage.com/ref/travis",
            "TRAVIS123",
            "1",
        )
    )
    answer = await world.run("lookup_user_invite", {"user": world.john})
    assert answer.kind == "edit" and answer.ephemeral
    [embed] = answer.embeds
    got = {f["name"]: f["value"] for f in embed["fields"]}
    assert embed["title"] == "✅ User Join Details Found"
    assert f"User ID: `{world.john.id}`" in got["👤 User Info"]
    assert "Invite Code: `abc123XYZ`" in got["🔗 Invite Details"]
    assert "IB Link: https://vantage.com/ref/travis" in got["👨‍💼 Referring Staff Member"]
    assert "IB Code: `TRAVIS123`" in got["👨‍💼 Referring Staff Member"]
    assert got["💾 Proof"].startswith("Write-ahead log record LSN 1 in segment")

    world.sim.leave(world.guild, world.john)  # now the option arrives as a User, not a Member
    world.ledger.append(MemberLeft(datetime.now(UTC), world.gid, str(world.john.id)))
    gone = await world.run("lookup_user_invite", {"user": world.john})
    assert gone.embeds[0]["title"] == "✅ User Join Details Found"
    stranger = await world.run("lookup_user_invite", {"user": world.sim.add_user("never_seen")})
    assert stranger.embeds[0]["title"] == "No join recorded"


async def test_a_member_without_manage_server_is_refused(world: World) -> None:
    answer = await world.run("lookup_user_invite", {"user": world.john}, by=world.member)
    assert answer.ephemeral and "Manage Server" in (answer.content or "") and not answer.embeds
    assert not any(name == "lookup_user_invite" for name, _ in world.ledger.calls)
    set_ib = {"staff": world.member, "ib_link": "https://x.example/r", "ib_code": "X1"}
    refused = await world.run("staff_ib set", set_ib, by=world.member)
    assert "Manage Server" in (refused.content or "") and world.ledger.lsn == 1


async def test_settle_join_picks_an_older_join_by_lsn_and_refuses_members_without_manage_server(
    world: World,
) -> None:
    # John's first join (LSN 1) was credited; an older ambiguous join of his is LSN 2 here, the latest LSN 3.
    john, gid, tid = str(world.john.id), world.gid, str(world.travis.id)
    earlier = datetime(2025, 10, 1, tzinfo=UTC)
    world.ledger.append(
        join(john, "john_doe", code=None, staff=None, kind=AttributionKind.AMBIGUOUS, at=earlier,
             candidates=("abc123XYZ", "maya2024"), guild_id=gid, uses=None),
        join(john, "john_doe", staff=(tid, "TravisP"), guild_id=gid),
    )  # fmt: skip
    options = {"user": world.john, "invite_code": "abc123XYZ", "reason": "he showed the DM"}
    refused = await world.run("settle_join", options, by=world.member)
    assert "Manage Server" in (refused.content or "") and world.ledger.lsn == 3
    latest = await world.run("settle_join", options)  # his latest join was credited by the bot
    assert (latest.content or "").startswith("⚠️ The bot recorded this join (LSN 3) as **exact**")
    settled = await world.run("settle_join", {**options, "join_lsn": 2})
    assert "(LSN 2, recorded ambiguous) used `abc123XYZ`" in (settled.content or "")
    assert f"credited to TravisP (<@{tid}>)" in (settled.content or "") and world.ledger.lsn == 4
    again = await world.run("settle_join", {**options, "join_lsn": 2, "invite_code": "maya2024"})
    assert "does not know who owns `maya2024`" in (again.content or "") and world.ledger.lsn == 4


async def test_bad_input_gets_a_clear_message(world: World) -> None:
    bad_id = await world.run("view_invite_logs", {"user_id": "12ab"})
    assert "not a Discord user id" in (bad_id.content or "")
    bad_date = await world.run("view_invite_logs", {"since": "31/10/2025"})
    assert "YYYY-MM-DD" in (bad_date.content or "")
    unknown = await world.run("view_invite_logs", {"invite_code": "nosuchcode"})
    assert "No joins recorded through invite code `nosuchcode`" in (unknown.content or "")
    bad_link = await world.run(
        "staff_ib set", {"staff": world.travis, "ib_link": "http://x.com", "ib_code": "T"}
    )
    assert "not an IB link" in (bad_link.content or "")
    bad_range = await world.run("export_invite_logs", {"since": "2025-11-01", "until": "2025-10-01"})
    assert "before" in (bad_range.content or "")


async def test_a_failing_handler_apologises_with_the_interaction_id(world: World) -> None:
    world.ledger.broken.add("status")
    interaction = world.sim.invoke(world.guild, world.admin, "ledger_status", {})
    answer = await world.sim.answer(interaction, timeout=5)
    assert "Sorry" in (answer.content or "") and str(interaction.id) in (answer.content or "")
    assert "Traceback" not in (answer.content or "") and world.staff.failures == 1
    world.staff.failures = 0
    world.ledger.broken.clear()


async def test_logs_page_with_buttons_forward_and_back(world: World) -> None:
    start = datetime(2025, 10, 1, tzinfo=UTC)
    world.ledger.append(
        *(
            join(f"30000000000000{i:04d}", f"user{i}", at=start + timedelta(hours=i), guild_id=world.gid)
            for i in range(7)
        )
    )
    interaction = world.sim.invoke(world.guild, world.admin, "view_invite_logs", {})
    first = await world.sim.answer(interaction, timeout=5)
    lines = first.embeds[0]["description"].splitlines()  # john joined last (Oct 31), then user6, user5
    assert "john" in lines[0] and "user5" in lines[2] and "Page 1" in first.embeds[0]["footer"]["text"]

    async def click(label: str) -> dict[str, Any]:
        [page] = interaction.messages
        [button] = [c for c in page.iter_components() if c.get("label") == label]
        press = world.sim.click(page, button["custom_id"], world.admin)
        await world.sim.answer(press, timeout=5)
        [page] = interaction.messages
        return page.embeds[0]

    second = await click("Next")
    assert "Page 2" in second["footer"]["text"] and "user3" in second["description"]
    third = await click("Next")
    assert "Page 3" in third["footer"]["text"] and "user0" in third["description"]
    assert "no older joins" in third["footer"]["text"]
    back = await click("Previous")
    assert back["description"] == second["description"]
    world.staff.pages.clock = lambda: time.monotonic() + 3600  # an hour later the state has expired
    [page] = interaction.messages
    [button] = [c for c in page.iter_components() if c.get("label") == "Next"]
    late = world.sim.click(page, button["custom_id"], world.admin)
    expired = await world.sim.answer(late, timeout=5)
    assert "expired" in (expired.content or "") and expired.ephemeral


async def test_export_attaches_csv_rows_and_gzips_or_refuses_large_files(world: World) -> None:
    answer = await world.run("export_invite_logs", {})
    [upload] = answer.files
    assert upload.filename.endswith(".csv") and "1 joins as CSV" in (answer.content or "")
    rows = list(csv.DictReader(io.StringIO(upload.data.decode("utf-8-sig"))))
    assert [(r["user_id"], r["invite_code"], r["staff_username"]) for r in rows] == [
        (str(world.john.id), "abc123XYZ", "TravisP")
    ]
    world.staff.gzip_above = 10
    zipped = await world.run("export_invite_logs", {"format": "jsonl"})
    [upload] = zipped.files
    assert upload.filename.endswith(".jsonl.gz") and "gzipped" in (zipped.content or "")
    [record] = [json.loads(line) for line in gzip.decompress(upload.data).splitlines()]
    assert record["user_id"] == str(world.john.id)
    world.staff.attachment_limit = 50
    refused = await world.run("export_invite_logs", {"since": "2025-10-01"})
    assert not refused.files and "invite-ledger export --guild" in (refused.content or "")
    assert "--since 2025-10-01T00:00:00Z" in (refused.content or "")
    empty = await world.run("export_invite_logs", {"until": "2020-01-01"})
    assert "nothing to export" in (empty.content or "")
    assert all(not path.exists() for path in world.ledger.exports)  # temporary files are removed


async def test_sync_compares_discord_uses_with_the_ledger(world: World) -> None:
    world.sim.join(world.guild, world.sim.add_user("unrecorded"), via="abc123XYZ")
    answer = await world.run("sync_member_invites")
    [embed] = answer.embeds
    first = embed["description"].splitlines()[0]
    assert first.startswith("⚠️ `abc123XYZ` (TravisP): Discord **2**, ledger **1** (+1)")
    assert {"abc123XYZ": 2, "pipvault": 0} == next(
        args[1] for name, args in world.ledger.calls if name == "invite_comparison"
    )


async def test_staff_ib_set_show_remove_go_through_the_ledger(world: World) -> None:
    link = "https://vantage.com/ref/travis"
    saved = await world.run("staff_ib set", {"staff": world.travis, "ib_link": link, "ib_code": "TRAVIS123"})
    assert "Saved the IB profile of TravisP" in (saved.content or "") and "LSN 2" in (saved.content or "")
    shown = await world.run("staff_ib show", {"staff": world.travis})
    assert link in shown.embeds[0]["description"] and "`TRAVIS123`" in shown.embeds[0]["description"]
    everyone = await world.run("staff_ib show")
    assert "TravisP" in everyone.embeds[0]["description"]
    removed = await world.run("staff_ib remove", {"staff": world.travis})
    assert "Removed" in (removed.content or "") and "LSN 3" in (removed.content or "")
    again = await world.run("staff_ib remove", {"staff": world.travis})
    assert "has no IB profile to remove" in (again.content or "")


async def test_ledger_status(world: World) -> None:
    answer = await world.run("ledger_status")
    got = {f["name"]: f["value"] for f in answer.embeds[0]["fields"]}
    assert got["Durable LSN"] == "1" and got["Applied LSN"] == "1 (lag 0 records)"
    assert "Shipped LSN 1" in got["Backup: dir:///backups"]
