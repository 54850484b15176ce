"""The pipeline benchmark's baseline: what a user would build from the brief ("write JSON, write CSV, update
DB"), one join at a time (see `benchmarks.pipeline`'s docstring)."""

from __future__ import annotations

import csv
import json
import sqlite3
import time
from pathlib import Path

import anyio
import attrs

from benchmarks.pipeline_world import GATEWAY_BUFFER, SEED, build_world, plan_joins
from service.events import MemberJoined
from service.gateway import ScriptedGateway


@attrs.frozen
class NaiveResult:
    joins: int
    seconds: float
    cpu_seconds: float
    wrong: int
    unknown: int

    @property
    def per_second(self) -> float:
        return self.joins / self.seconds


async def run_naive(directory: Path, joins: int, guilds: int, seed: int = SEED) -> NaiveResult:
    """The brief's approach done plainly: per join, fetch and diff the invites, write JSON, write CSV,
    update the DB (synchronous=FULL), one join at a time."""
    gateway = ScriptedGateway(buffer=GATEWAY_BUFFER)
    world = build_world(gateway, guilds)
    plan = plan_joins(gateway, world, joins, "spread", seed)
    truth = {j.member.user_id: j.staff_id for j in plan}
    inviter: dict[str, str] = {}
    cache: dict[str, dict[str, int]] = {}
    for guild_id, _ in world:
        answer = await gateway.fetch_invites(guild_id)
        cache[guild_id] = {i.code: i.uses for i in answer.invites}
        inviter.update({i.code: i.inviter_id or "" for i in answer.invites})

    # Blocking file and SQLite calls on the event loop, one join at a time: that is the naive design.
    directory.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240
    json_file = open(directory / "joins.jsonl", "a", encoding="utf-8")  # noqa: ASYNC230
    csv_file = open(directory / "joins.csv", "a", encoding="utf-8", newline="")  # noqa: ASYNC230
    csv_out = csv.writer(csv_file)
    db = sqlite3.connect(directory / "joins.sqlite3")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute(
        "CREATE TABLE IF NOT EXISTS joins (id INTEGER PRIMARY KEY, at TEXT, guild_id TEXT, user_id TEXT, "
        "username TEXT, invite_code TEXT, staff_id TEXT)"
    )
    db.commit()
    wrong = unknown = 0

    async def consume(done: anyio.Event) -> None:
        nonlocal wrong, unknown
        seen = 0
        async for event in gateway.events:
            if type(event) is not MemberJoined:
                continue
            answer = await gateway.fetch_invites(event.guild_id)
            now = {i.code: i.uses for i in answer.invites}
            before = cache[event.guild_id]
            code = next((c for c, uses in now.items() if uses > before.get(c, 0)), None)
            cache[event.guild_id] = now
            staff = inviter.get(code) if code is not None else None
            member = event.member
            row = {
                "at": event.at.isoformat(),
                "guild_id": event.guild_id,
                "user_id": member.user_id,
                "username": member.username,
                "invite_code": code,
                "staff_id": staff,
            }
            json_file.write(json.dumps(row) + "\n")
            json_file.flush()
            csv_out.writerow(row.values())
            csv_file.flush()
            with db:
                db.execute(
                    "INSERT INTO joins (at, guild_id, user_id, username, invite_code, staff_id) "
                    "VALUES (:at, :guild_id, :user_id, :username, :invite_code, :staff_id)",
                    row,
                )
            if staff is None:
                unknown += 1
            elif staff != truth[member.user_id]:
                wrong += 1
            seen += 1
            if seen == joins:
                done.set()
                return

    done = anyio.Event()
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(consume, done)
            started, cpu_started = time.perf_counter(), time.process_time()
            for j in plan:
                await gateway.join(j.guild_id, j.member, j.code)
            await done.wait()
            seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    finally:
        json_file.close()
        csv_file.close()
        db.close()
    return NaiveResult(joins, seconds, cpu, wrong, unknown)
