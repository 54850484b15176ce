"""`SimState`: the simulated guild's state and clock, shared by the bot's side (`bot.py`) and the guild's own
doings (`sim.py`).

Discord's clock runs `offset` ahead of the bot's (`discord(t)`, `at(t)`); everything that happens is an
action on one heap, in time order (`schedule`).
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import attrs

from benchmarks.guildsim.outcome import TrueJoin
from benchmarks.guildsim.scenario import DISCORD_EPOCH_MS, T0, Scenario
from service.attribution import AttributionConfig, Attributor
from service.records import InviteState, Record


@attrs.define
class SimInvite:
    code: str
    uses: int
    max_uses: int
    inviter_id: str
    inviter_name: str
    created_at: datetime
    expires_at: datetime | None
    deleted: bool = False

    def state(self) -> InviteState:
        return InviteState(
            code=self.code,
            uses=self.uses,
            max_uses=self.max_uses,
            inviter_id=self.inviter_id,
            inviter_name=self.inviter_name,
            expires_at=self.expires_at,
            created_at=self.created_at,
        )


class SimState:
    def __init__(self, scenario: Scenario, config: AttributionConfig | None = None) -> None:
        self.sc = scenario
        self.config = config or AttributionConfig()
        self.rng = random.Random(scenario.seed)
        self.audit_rng = random.Random(f"audit {scenario.seed}")
        self.offset = self.rng.uniform(-scenario.skew, scenario.skew)  # Discord = bot + offset
        self.heap: list[tuple[float, int, Callable[[], None]]] = []
        self.seq = 0
        self.now = 0.0
        self.invites: dict[str, SimInvite] = {}
        self.vanity_uses = self.rng.randint(0, 50)
        self.members: dict[str, datetime] = {}  # present members -> joined_at
        self.truth: list[TrueJoin] = []
        self.log: list[Record] = []
        self.recorded: set[tuple[str, datetime]] = set()
        self.staff = [(self._snowflake(-400 * 86400), f"staff{i}") for i in range(scenario.staff)]
        self.bot: Attributor | None = None
        self.epoch = 0
        self.connected = False
        self.last_route = -1e9
        self.core_seconds = 0.0
        self.codes = 0
        self.served: list[float] = []
        self.hidden: dict[str, float] = {}
        self.used_up: dict[str, float] = {}
        self.audited: set[str] = set()

    # ------------------------------------------------------------- helpers

    def discord(self, t: float) -> datetime:
        return T0 + timedelta(seconds=t + self.offset)

    def at(self, t: float) -> datetime:
        return T0 + timedelta(seconds=t)

    def schedule(self, t: float, action: Callable[[], None]) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (t, self.seq, action))

    def _snowflake(self, age_seconds: float) -> str:
        created_ms = int((T0 + timedelta(seconds=age_seconds)).timestamp() * 1000)
        return str(((created_ms - DISCORD_EPOCH_MS) << 22) | self.rng.getrandbits(22))

    def _new_invite(self, t: float, **overrides: Any) -> SimInvite:
        self.codes += 1
        staff_id, staff_name = self.rng.choice(self.staff)
        expiry = self.rng.choice(self.sc.expiry_choices)
        invite = SimInvite(
            code=f"c{self.codes:04d}",
            uses=0,
            max_uses=self.rng.choice(self.sc.max_uses_choices),
            inviter_id=staff_id,
            inviter_name=staff_name,
            created_at=self.discord(t),
            expires_at=None if expiry is None else self.discord(t + expiry),
        )
        invite = attrs.evolve(invite, **overrides)
        self.invites[invite.code] = invite
        return invite

    def alive(self, invite: SimInvite, t: float) -> bool:
        if invite.deleted:
            return False
        return invite.expires_at is None or self.discord(t) < invite.expires_at
