"""The pipeline benchmark's scripted world: guilds with staff invites, and who joins through which (fixed
seed), plus the core timing the in-memory gateway needs (see `benchmarks.pipeline`'s docstring)."""

from __future__ import annotations

import random
from datetime import timedelta

import attrs

from service.attribution.config import AttributionConfig
from service.events import MemberInfo
from service.gateway import ScriptedGateway

#: Timing knobs for an in-memory gateway (see the module docstring).
BENCH_CORE = AttributionConfig(
    gateway_latency=timedelta(milliseconds=250),
    clock_skew=timedelta(milliseconds=10),
    min_fetch_gap=timedelta(milliseconds=1),
    max_join_wait=timedelta(seconds=60),
)
GATEWAY_BUFFER = 32
INBOX_SIZE = 64
STAFF_PER_GUILD = 4
SEED = 20261124


@attrs.frozen
class Join:
    guild_id: str
    code: str
    staff_id: str
    member: MemberInfo


def build_world(gateway: ScriptedGateway, guilds: int) -> list[tuple[str, list[str]]]:
    world = []
    for g in range(guilds):
        guild_id = str(700_000_000_000_000_000 + g)
        gateway.add_guild(guild_id, f"Bench Guild {g}", vanity_code=None)
        codes = []
        for s in range(STAFF_PER_GUILD):
            code = f"g{g}s{s}"
            gateway.create_invite(guild_id, code, inviter_id=staff_id_of(g, s), inviter_name=f"staff{g}.{s}")
            codes.append(code)
        world.append((guild_id, codes))
    return world


def staff_id_of(guild: int, staff: int) -> str:
    return str(800_000_000_000_000_000 + guild * 100 + staff)


def plan_joins(
    gateway: ScriptedGateway, world: list[tuple[str, list[str]]], n: int, mode: str, seed: int
) -> list[Join]:
    """Who joins which guild through which invite, in arrival order (fixed seed)."""
    rng = random.Random(seed)
    plan: list[Join] = []
    if mode == "spread":
        for i in range(n):
            g = rng.randrange(len(world))
            s = rng.randrange(STAFF_PER_GUILD)
            guild_id, codes = world[g]
            plan.append(Join(guild_id, codes[s], staff_id_of(g, s), gateway.new_user(f"user{i}")))
    elif mode == "bursts":
        used = [rng.randrange(STAFF_PER_GUILD) for _ in world]  # the one invite each guild's joins use
        while len(plan) < n:
            g = rng.randrange(len(world))
            guild_id, codes = world[g]
            for _ in range(min(rng.randint(5, 20), n - len(plan))):
                member = gateway.new_user(f"user{len(plan)}")
                plan.append(Join(guild_id, codes[used[g]], staff_id_of(g, used[g]), member))
    else:
        raise ValueError(mode)
    return plan
