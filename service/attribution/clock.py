"""How far Discord's clock may be from the bot's, learned from the joins themselves.

A member's `joined_at` is Discord's clock at the join; the GUILD_MEMBER_ADD reaches the bot between 0 and
`gateway_latency` seconds later on the bot's clock. So every live join bounds the offset (Discord minus bot):

    joined_at - arrival  <=  offset  <=  joined_at - arrival + gateway_latency

The lower bound needs no assumption at all (an event cannot arrive before it happened); the largest one seen
pins the latest moment a join can have used its invite to within the quickest delivery. The configured
`clock_skew` caps the offset on both sides, unless the joins prove it wrong, in which case only what they
prove is used. Tighter bounds mean narrower windows for when each use happened, so more joins told apart; the
bounds only ever narrow, so no decision taken earlier is contradicted.
"""

from __future__ import annotations

import math

import attrs


@attrs.define
class ClockOffset:
    latency: float  # gateway_latency, seconds
    skew: float  # clock_skew, seconds
    at_least: float = -math.inf  # max over live joins of joined_at - arrival
    at_most: float = math.inf  # min over live joins of joined_at - arrival + latency
    # bounds() is read several times per event and changes only when a join narrows it.
    _bounds: tuple[float, float] | None = attrs.field(default=None, init=False, eq=False, repr=False)

    def observe(self, joined_at: float, arrival: float) -> None:
        at_least = max(self.at_least, joined_at - arrival)
        at_most = min(self.at_most, joined_at - arrival + self.latency)
        if at_least != self.at_least or at_most != self.at_most:
            self.at_least, self.at_most, self._bounds = at_least, at_most, None

    def bounds(self) -> tuple[float, float]:
        """(lowest, highest) possible offset, Discord's clock minus the bot's, in seconds."""
        if self._bounds is None:
            self._bounds = self._compute()
        return self._bounds

    def _compute(self) -> tuple[float, float]:
        if self.at_least > self.at_most:  # deliveries slower than gateway_latency: trust neither side
            return min(self.at_most, -self.skew) - self.latency, max(self.at_least, self.skew) + self.latency
        low, high = max(self.at_least, -self.skew), min(self.at_most, self.skew)
        if low <= high:
            return low, high
        return self.at_least, self.at_most  # the configured skew is wrong: keep to what the joins prove
