"""The multi-guild façade: one `Attributor` per process, fed every event, returning effects to perform."""

from __future__ import annotations

import heapq
from datetime import UTC, datetime

from service.attribution.clock import ClockOffset
from service.attribution.config import AttributionConfig
from service.attribution.core import DUE_SLACK, GuildAttribution
from service.attribution.effects import Effect, WakeAt
from service.events import ClockTick, Event, GatewayDisconnected


class Attributor:
    """Routes events to each guild's `GuildAttribution` and merges their wake-up times into one `WakeAt`."""

    def __init__(self, config: AttributionConfig | None = None) -> None:
        self.config = config or AttributionConfig()
        self._guilds: dict[str, GuildAttribution] = {}
        self._wakes: dict[str, float] = {}
        # The same wake times as a heap, so that the earliest is not a scan of every guild after every event;
        # entries whose time is no longer their guild's are dropped when they reach the top.
        self._heap: list[tuple[float, str]] = []
        self._announced: float | None = None
        self._clock = ClockOffset(
            self.config.gateway_latency.total_seconds(), self.config.clock_skew.total_seconds()
        )

    def handle(self, event: Event) -> list[Effect]:
        """Feed one event; returns the effects to perform, in order (log records in the order to append)."""
        effects: list[Effect] = []
        if isinstance(event, ClockTick):
            for guild_id in self._take_due(event.at.timestamp() + DUE_SLACK):
                effects.extend(self._feed(guild_id, event))
        elif isinstance(event, GatewayDisconnected):
            for guild_id in list(self._guilds):
                effects.extend(self._feed(guild_id, event))
        else:
            effects.extend(self._feed(event.guild_id, event))
        wake = self.next_wake_ts()
        if wake is not None and wake != self._announced:
            effects.append(WakeAt(datetime.fromtimestamp(wake, UTC)))
        self._announced = wake
        return effects

    def next_wake(self) -> datetime | None:
        """When the next `ClockTick` is due (None: nothing is waiting on time)."""
        wake = self.next_wake_ts()
        return None if wake is None else datetime.fromtimestamp(wake, UTC)

    def next_wake_ts(self) -> float | None:
        heap, wakes = self._heap, self._wakes
        while heap and wakes.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def _take_due(self, limit: float) -> list[str]:
        """The guilds whose wake time is at or before `limit`, earliest first, taken off the schedule (their
        feed puts their next wake back). From the heap: a tick comes every few joins, and scanning every
        guild's wake for each one cost more than the tick's own work with hundreds of guilds."""
        heap, wakes = self._heap, self._wakes
        due: list[str] = []
        while heap and heap[0][0] <= limit:
            wake, guild_id = heapq.heappop(heap)
            if wakes.get(guild_id) == wake:  # else stale: the guild's wake moved since this entry
                del wakes[guild_id]
                due.append(guild_id)
        return due

    def guild(self, guild_id: str) -> GuildAttribution:
        guild = self._guilds.get(guild_id)
        if guild is None:
            guild = self._guilds[guild_id] = GuildAttribution(guild_id, self.config, self._clock)
        return guild

    @property
    def undecided(self) -> int:
        """Joins received and not yet decided, over all guilds (a backlog metric)."""
        return sum(guild.undecided for guild in self._guilds.values())

    def _feed(self, guild_id: str, event: Event) -> list[Effect]:
        guild = self.guild(guild_id)
        effects = guild.handle(event)
        wake = guild.next_wake()
        if wake is None:
            self._wakes.pop(guild_id, None)
        elif self._wakes.get(guild_id) != wake:
            self._wakes[guild_id] = wake
            heapq.heappush(self._heap, (wake, guild_id))
            if len(self._heap) > 2 * len(self._wakes) + 64:  # mostly stale: start again from the dict
                self._heap = [(w, g) for g, w in self._wakes.items()]
                heapq.heapify(self._heap)
        return effects
