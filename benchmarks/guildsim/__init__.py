"""A simulated Discord guild that drives the attribution core as its actor would, and knows the truth.

Shared by the property test (tests/service/test_attribution_property.py) and `benchmarks.attribution`.
Discrete events on the bot's clock (seconds from `T0`); Discord's clock is off by a constant skew. The guild
has staff-owned invites (max uses, expiry), a vanity URL, invites created and deleted by staff, members who
join through an invite, the vanity URL or none (discovery, bots), leave, rejoin; gateway events arrive after
a random latency; an invite deleted by hand gets its audit log entry (`InviteFinalUses`, with its final use
count) after a latency of its own, sometimes seconds late, sometimes never (none at an invite's expiry or
last use); invite fetches are answered after a round trip, rate-limited (429 with retry_after) or failed;
the bot restarts (losing what it held in memory; the log survives) and loses its gateway session.

What the simulated Discord does not do (the core's stated assumptions, see service/attribution/__init__.py):
deliver a gateway event later than `gateway_latency`; run its clock further than `clock_skew` from the
bot's; let a member who joined while the bot was away leave before the bot has recorded them; let a staff
member delete by hand an invite one use short of its max_uses (DESIGN.md's max_uses rule cannot tell that
from the last use; with the INVITE_DELETE in view the core narrows it to seconds); and crash the bot or
drop its gateway session before anything about the guild is in the log.

The simulator's modules: `scenario.py` (the knobs of a run, the constants of the simulated guild and the
join patterns); `GuildSim` in three layers, `state.py` (the guild's state and the event heap), `bot.py`
(the bot it drives: the core fed as the actor feeds it, the gateway, fetches, restarts) and `sim.py` (what
the guild's members and staff do, and the run); and `outcome.py` (what really happened, the records the
bot wrote, and their score against an oracle).
"""

from benchmarks.guildsim.outcome import Outcome, Score, TrueJoin
from benchmarks.guildsim.scenario import (
    DISCORD_EPOCH_MS,
    GUILD,
    T0,
    VANITY,
    Scenario,
    burst_joins,
    raid_joins,
    spaced_joins,
)
from benchmarks.guildsim.sim import GuildSim

__all__ = [
    "DISCORD_EPOCH_MS",
    "GUILD",
    "T0",
    "VANITY",
    "GuildSim",
    "Outcome",
    "Scenario",
    "Score",
    "TrueJoin",
    "burst_joins",
    "raid_joins",
    "spaced_joins",
]
