"""What a simulated run is made of: the knobs (`Scenario`), the guild's constants, and the join patterns.

Separate from the simulator (`sim.py`) so that a benchmark or a test describes its runs without reading how
they are played: everything random in a run follows from `Scenario.seed`.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime

import attrs

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
GUILD = "900000000000000001"
VANITY = "pipvault"
DISCORD_EPOCH_MS = 1420070400000


@attrs.frozen
class Scenario:
    """Knobs of one simulated run; everything random follows from `seed`."""

    seed: int
    join_times: tuple[float, ...]  # when members join (bot clock, seconds)
    initial_invites: int = 6
    staff: int = 5
    max_uses_choices: tuple[int, ...] = (0, 0, 0, 1, 2, 5, 10)
    expiry_choices: tuple[float | None, ...] = (None, None, 3600.0, 600.0)
    create_every: float = 400.0  # mean seconds between invites created by staff
    delete_every: float = 900.0  # mean seconds between invites deleted by hand
    p_vanity: float = 0.1
    p_discovery: float = 0.08
    p_bot: float = 0.03
    p_leave: float = 0.15  # a member leaves again (and may rejoin later)
    p_duplicate: float = 0.05  # GUILD_MEMBER_ADD sent twice
    p_young: float = 0.1
    p_vanity_unknown: float = 0.05  # the vanity URL's uses could not be read
    latency: tuple[float, float] = (0.05, 1.5)  # gateway delivery delay
    skew: float = 0.4  # |Discord clock - bot clock|
    rtt: tuple[float, float] = (0.08, 0.6)  # fetch round trip
    route_gap: float = 0.0  # Discord answers 429 to fetches closer together than this
    storms: tuple[tuple[float, float], ...] = ()  # windows in which every fetch gets a 429
    p_fetch_fail: float = 0.02
    restarts: tuple[tuple[float, float], ...] = ()  # (down at, down for)
    gaps: tuple[tuple[float, float], ...] = ()  # gateway sessions lost: (at, for)
    raid_invite_share: float = 0.0  # share of joins in `raid_window` that use the one raid invite
    raid_window: tuple[float, float] = (0.0, 0.0)
    # The audit log entry of an invite deleted by hand: its delay, how often it comes late (and how late),
    # how often never. Drawn from a generator of its own, so the rest of a seed's guild stays the same.
    audit_latency: tuple[float, float] = (0.1, 2.5)
    p_audit_late: float = 0.05
    audit_late: tuple[float, float] = (5.0, 30.0)
    p_audit_lost: float = 0.05


# ------------------------------------------------------------------ join patterns


def spaced_joins(
    rng: random.Random, count: int, gap: tuple[float, float] = (20.0, 120.0)
) -> tuple[float, ...]:
    times: list[float] = []
    t = 5.0
    for _ in range(count):
        t += rng.uniform(*gap)
        times.append(t)
    return tuple(times)


def burst_joins(rng: random.Random, bursts: int, size: tuple[int, int] = (2, 10)) -> tuple[float, ...]:
    """Bursts of 2 to 10 joins within about two seconds, minutes apart."""
    times: list[float] = []
    t = 5.0
    for _ in range(bursts):
        t += rng.uniform(60, 300)
        times.extend(t + rng.uniform(0, 2.0) for _ in range(rng.randint(*size)))
    return tuple(sorted(times))


def raid_joins(
    rng: random.Random, raid_at: float, count: int = 500, length: float = 60.0
) -> tuple[float, ...]:
    """Organic joins around a raid of `count` joins within `length` seconds."""
    before = spaced_joins(rng, 10, (20, 60))
    raid = sorted(raid_at + rng.uniform(0, length) for _ in range(count))
    after = [raid_at + length + t for t in spaced_joins(rng, 10, (20, 60))]
    return tuple(sorted([*before, *raid, *after]))
