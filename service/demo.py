"""The demo: `make run` with no DISCORD_TOKEN runs the real bot against the local Discord simulator.

It starts `sim/` on 127.0.0.1, points the bot at it, plays joins through several staff members' invites
(with a vanity join, a burst, a rejoin, and two joins at the same moment that no count can tell apart),
invokes the staff's slash commands as a staff member would (settling one of the pair by hand), and prints
the bot's answers and where the log, the database and the backups are.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import attrs

from service.bot import run_bot
from service.config import Config, Secret
from sim import SimServer
from sim.demo import DemoWorld, populate_demo_guild, run_join_script
from sim.interactions import Answer

Say = Callable[[str], None]


def demo_config(config: Config, sim: SimServer, world: DemoWorld) -> Config:
    """The configuration pointed at the simulator, with the demo's data kept apart from a real bot's."""
    storage = attrs.evolve(config.storage, data_dir=str(Path(config.storage.data_dir) / "demo"))
    discord = attrs.evolve(
        config.discord,
        token=Secret(sim.token),
        api_base_url=sim.base_url,
        join_log_channel_id=str(world.join_log.id),
    )
    # The simulator delivers events at once, so the core need not wait Discord's 3 s for stragglers.
    attribution = attrs.evolve(config.attribution, gateway_latency_s=0.3)
    return attrs.evolve(config, discord=discord, storage=storage, attribution=attribution)


def render_answer(answer: Answer) -> list[str]:
    """An answer as a person reads it: content, embeds (title, fields), attached files."""
    data = answer.data
    lines = []
    if data.get("content"):
        lines.append(str(data["content"]))
    for embed in data.get("embeds") or []:
        if embed.get("title"):
            lines.append(f"== {embed['title']} ==")
        if embed.get("description"):
            lines.append(str(embed["description"]))
        for field in embed.get("fields") or []:
            value = str(field.get("value", "")).replace("\n", "\n    ")
            lines.append(f"  {field.get('name')}: {value}")
        if (embed.get("footer") or {}).get("text"):
            lines.append(f"  ({embed['footer']['text']})")
    for stored in answer.files:
        lines.append(f"  [attachment {stored.filename}: {len(stored.data)} bytes]")
        if stored.filename.endswith(".csv"):
            rows = list(csv.reader(io.StringIO(stored.data.decode("utf-8-sig"))))
            for row in rows[:4]:
                lines.append("    " + ",".join(row[:8]))
            if len(rows) > 4:
                lines.append(f"    … {len(rows) - 1} rows in all")
    return lines


async def ask(sim: SimServer, world: DemoWorld, say: Say, command: str, options: dict[str, Any]) -> Answer:
    staff = world.staff["TravisP"]
    shown = " ".join(f"{k}:{getattr(v, 'username', v)}" for k, v in options.items())
    say(f"\n/{command} {shown}".rstrip())
    interaction = sim.invoke(world.guild, staff, command, options)
    answer = await sim.answer(interaction, timeout=15)
    for line in render_answer(answer):
        say(f"  {line}")
    return answer


async def joins_logged(service: Any, count: int) -> None:
    with anyio.fail_after(60):
        # Polled: joins are counted by a metric, and no event marks "the demo's joins are in".
        while service.ledger.metrics.joins_logged() < count:  # noqa: ASYNC110
            await anyio.sleep(0.1)


async def run_demo(config: Config, *, pause_s: float = 1.5, say: Say = print) -> dict[str, Any]:
    """Play the demo once and return what it counted (for the test that runs it in CI)."""
    async with SimServer.running(host="127.0.0.1", port=0) as sim:
        world = populate_demo_guild(sim)
        config = demo_config(config, sim, world)
        say(f"simulator: {sim.base_url} (a Discord-compatible server on 127.0.0.1)")
        async with anyio.create_task_group() as tg:
            service = await tg.start(run_bot, config)
            await sim.wait_ready(timeout=20)
            say(f"bot: logged in; {service.ledger.recovery_line or 'recovery: fresh start'}")
            travis, maya = world.staff["TravisP"], world.staff["MayaK"]
            await ask(
                sim,
                world,
                say,
                "staff_ib set",
                {"staff": travis, "ib_link": "https://vantage.example/ref/travis", "ib_code": "TRAVIS123"},
            )
            await ask(
                sim,
                world,
                say,
                "staff_ib set",
                {"staff": maya, "ib_link": "https://vantage.example/ref/maya", "ib_code": "MAYA7"},
            )
            say("\njoins:")
            members = await run_join_script(sim, world, pause_s=pause_s, say=say)
            burst = [sim.add_user(f"burst_{n}") for n in range(3)]
            say(f"  sim: a burst of {len(burst)} joins through TravisP's invite at once")
            for person in burst:
                sim.join(world.guild, person, world.invites["TravisP"].code)
            expected_joins = sum(1 for _ in members) - 1 + len(burst)  # the leave is not a join
            await joins_logged(service, expected_joins)
            # Then two joins through different invites at the same moment (after the burst is recorded:
            # sharing its fetch, they would make the burst's joins ambiguous too).
            twins = [sim.add_user(name) for name in ("twin_a", "twin_b")]
            travis_code, maya_code = world.invites["TravisP"].code, world.invites["MayaK"].code
            say(f"  sim: twin_a and twin_b join at the same moment, through {travis_code} and {maya_code}")
            sim.join(world.guild, twins[0], travis_code)
            sim.join(world.guild, twins[1], maya_code)
            expected_joins += len(twins)
            await joins_logged(service, expected_joins)
            john = next(m.user for m in members if m.user.username == "john_doe")
            await ask(sim, world, say, "lookup_user_invite", {"user": john})
            await ask(sim, world, say, "view_invite_logs", {})
            await ask(sim, world, say, "export_invite_logs", {"format": "csv"})
            await ask(sim, world, say, "sync_member_invites", {})
            # One fetch counted both twins' uses: the bot credits neither. Staff learn which link twin_a
            # used and settle it, on record with the reason.
            await ask(sim, world, say, "lookup_user_invite", {"user": twins[0]})
            reason = "twin_a showed TravisP's link in their DMs"
            await ask(
                sim,
                world,
                say,
                "settle_join",
                {"user": twins[0], "invite_code": travis_code, "reason": reason},
            )
            await ask(sim, world, say, "lookup_user_invite", {"user": twins[0]})
            status = await ask(sim, world, say, "ledger_status", {})
            posted = [m.content for m in sim.channel_messages(world.join_log)]
            say(f"\njoin-log channel: {len(posted)} message(s)")
            for content in posted[:3]:
                say("  " + content.replace("\n", "\n  "))
            ledger_status = await service.ledger.status()
            service.stop()
        return {
            "joins": expected_joins,
            "durable_lsn": ledger_status.durable_lsn,
            "applied_lsn": ledger_status.applied_lsn,
            "status_answer": bool(status.data),
            "join_log_messages": len(posted),
            "data_dir": str(config.data_dir),
            "backups": list(config.backup_targets),
        }


def main(config: Config, *, pause_s: float = 1.5) -> int:
    counted = asyncio.run(run_demo(config, pause_s=pause_s))  # asyncio: interactions.py needs it
    data_dir = Path(counted["data_dir"]).absolute()
    print("\nwhere things are:")
    print(f"  log (the truth):  {data_dir / 'wal'}   (invite-ledger wal dump --data-dir {data_dir})")
    print(f"  database:         {data_dir / 'ledger.sqlite3'}")
    for url in counted["backups"]:
        print(f"  backups:          {url}")
    print(f"  inspect:          invite-ledger checkpoint --data-dir {data_dir}")
    print("\ndemo finished: " + json.dumps(counted))
    return 0
