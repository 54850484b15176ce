"""The per-guild state the attribution machine reads and writes, in one place: every field with what it means.

`GuildAttribution` (core.py) is built in layers, each a module of its own so that a reader finds a part by
its name: this state; asking for the invites and taking the answers (`fetching.py`); joins, leaves, restores,
member lists and blind spans (`joins.py`); the round run after every event (`rounds.py`); and the public
`handle` / `next_wake` (core.py). The layers are base classes of one object, not objects of their own, so a
call from one to another is a plain method call on `self`: no extra layer on the per-event path.
"""

from __future__ import annotations

import math
from collections import deque
from datetime import UTC, datetime

import attrs

from service.attribution.clock import ClockOffset
from service.attribution.config import AttributionConfig
from service.attribution.diff import FinalUses, Observation, SeenCreate
from service.attribution.effects import Effect
from service.attribution.problem import Join

_SAME_INSTANT = 0.001  # two joined_at values this close are the same join
#: A wake-up time counts as reached this close to it: WakeAt travels as a datetime (whole microseconds).
DUE_SLACK = 2e-6


@attrs.define
class _Present:
    joined_at: float | None  # Discord's joined_at, POSIX seconds
    arrival: float


class GuildState:
    def __init__(self, guild_id: str, config: AttributionConfig, clock: ClockOffset | None = None) -> None:
        self.guild_id = guild_id
        self.config = config
        self.guild_name = ""
        self.vanity_code: str | None = None
        self._latency = config.gateway_latency.total_seconds()
        self._skew = config.clock_skew.total_seconds()
        self._clock = clock or ClockOffset(self._latency, self._skew)  # shared by the guilds of one bot
        self._windows_from = self._clock.bounds()  # the clock bounds the join windows were computed with
        self._wait = config.max_join_wait.total_seconds()
        self._fetch_timeout = config.fetch_timeout.total_seconds()  # read after every event: kept as floats
        self._fetch_gap = config.min_fetch_gap.total_seconds()
        self._now = -math.inf
        self._now_dt = datetime.min.replace(tzinfo=UTC)
        self._available = False
        self._horizon: float | None = None  # members who joined after this are this core's to record
        self._last_gateway: float | None = None
        self._baseline: Observation | None = None
        self._fetches: list[Observation] = []  # answered since the baseline, in order
        self._settled = 0  # how many of them the last decision round compared
        self._creates: dict[str, SeenCreate] = {}
        self._deletes: dict[str, float] = {}
        self._finals: dict[str, FinalUses] = {}  # audit log: use counts of invites deleted by hand
        self._final_wait = config.audit_log_latency.total_seconds()
        self._awaiting: float | None = None  # the last round held joins for a final count until then
        self._blind: list[tuple[float, float]] = []
        self._joins: list[Join] = []  # undecided joins, and decided ones whose use may explain a later count
        self._queue: deque[Join] = deque()  # not yet logged, in arrival order
        self._present: dict[str, _Present] = {}
        # Each member's recent joined_at values: a join sent again repeats one, even after a leave and rejoin.
        self._joined_at: dict[str, tuple[float, ...]] = {}
        self._known: set[str] = set()
        self._seq = 0
        self._request_id = 0
        self._in_flight: tuple[int, float] | None = None
        self._blocked_until = -math.inf
        self._failures = 0
        self._last_request = -math.inf
        self._refresh = False
        self._snapshot_logged: float | None = None
        self._dirty = False
        self._out: list[Effect] = []
