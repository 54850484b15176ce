"""The bot's side of the simulation: the attribution core fed as its actor would feed it, gateway events
delivered after a latency (and lost with a session), invite fetches answered, rate-limited or failed, and
the bot stopping and starting again from its log."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable

from benchmarks.guildsim.scenario import GUILD, T0, VANITY
from benchmarks.guildsim.state import SimState
from service.attribution import Attributor, FetchInvites, LogRecord, WakeAt, restore_events
from service.events import (
    ClockTick,
    Event,
    FetchFailed,
    FetchRateLimited,
    GatewayDisconnected,
    GuildAvailable,
    InvitesFetched,
    MemberInfo,
)
from service.records import JoinRecorded


class SimBot(SimState):
    def feed(self, event: Event) -> None:
        bot = self.bot
        if bot is None:
            return
        started = time.perf_counter()
        effects = bot.handle(event)
        self.core_seconds += time.perf_counter() - started
        epoch = self.epoch
        for effect in effects:
            if isinstance(effect, LogRecord):
                self.log.append(effect.record)
                if isinstance(effect.record, JoinRecorded):
                    self.recorded.add((effect.record.user_id, effect.record.timestamp))
            elif isinstance(effect, FetchInvites):
                self._fetch(effect.request_id, epoch)
            elif isinstance(effect, WakeAt):
                wake = max(self.now, effect.at.timestamp() - T0.timestamp())
                self.schedule(wake, lambda: self._tick(epoch))

    def _tick(self, epoch: int) -> None:
        if epoch == self.epoch and self.bot is not None:
            self.feed(ClockTick(self.at(self.now)))

    def gateway(self, make: Callable[[float], Event], delay: float | None = None) -> None:
        """Send a gateway event after a latency; lost if the session drops or the bot stops meanwhile."""
        if self.bot is None or not self.connected:
            return
        epoch = self.epoch
        lag = self.rng.uniform(*self.sc.latency) if delay is None else delay

        def deliver() -> None:
            if epoch == self.epoch and self.connected and self.bot is not None:
                self.feed(make(self.now))

        self.schedule(self.now + lag, deliver)

    def _fetch(self, request_id: int, epoch: int) -> None:
        asked = self.now
        answer_in = self.rng.uniform(*self.sc.rtt)

        def answer(event: Event, served: float | None = None) -> None:
            if epoch == self.epoch and self.bot is not None:
                if served is not None:
                    self.served.append(served)
                self.feed(event)

        storm = next((end for start, end in self.sc.storms if start <= asked < end), None)
        if storm is None and asked - self.last_route < self.sc.route_gap:
            storm = self.last_route + self.sc.route_gap
        if storm is not None:
            retry = storm - asked + 0.01
            self.schedule(
                asked + answer_in,
                lambda: answer(FetchRateLimited(GUILD, request_id, self.at(self.now), retry_after=retry)),
            )
            return
        self.last_route = asked
        if self.rng.random() < self.sc.p_fetch_fail:
            self.schedule(
                asked + answer_in, lambda: answer(FetchFailed(GUILD, request_id, self.at(self.now)))
            )
            return
        served = asked + self.rng.uniform(0, answer_in)

        def serve() -> None:
            invites = tuple(i.state() for i in self.invites.values() if self.alive(i, self.now))
            vanity = None if self.rng.random() < self.sc.p_vanity_unknown else self.vanity_uses
            self.schedule(
                asked + answer_in,
                lambda: answer(
                    InvitesFetched(
                        GUILD,
                        request_id,
                        self.at(self.now),
                        invites=invites,
                        vanity_code=VANITY,
                        vanity_uses=vanity,
                    ),
                    served,
                ),
            )

        self.schedule(served, serve)

    # ---------------------------------------------------------- the guild

    def start_bot(self) -> None:
        self.epoch += 1
        self.bot = Attributor(self.config)
        for event in restore_events(self.log, self.config):
            self.feed(event)
        self.connected = True
        self.gateway(self._available, delay=self.rng.uniform(0.2, 2.0))

    def _available(self, now: float) -> Event:
        members = tuple(
            MemberInfo(user, user, user, joined_at=joined) for user, joined in self.members.items()
        )
        return GuildAvailable(GUILD, "Sim Guild", self.at(now), vanity_code=VANITY, members=members)

    def stop_bot(self, down_for: float) -> None:
        if self.bot is None:
            return  # already down
        if not self.log:
            # Nothing logged yet: a restart could not know since when this guild's joins are the bot's to
            # record (see the limits in service/attribution/reconcile.py). Crash a little later instead.
            self.schedule(self.now + 30, functools.partial(self.stop_bot, down_for))
            return
        self.schedule(self.now + down_for, self.start_bot)
        self.epoch += 1
        self.bot = None
        self.connected = False

    def lose_session(self, length: float) -> None:
        if self.bot is None or not self.log:
            return  # down anyway; or the guild was never seen: joins before that are not the bot's
        self.feed(GatewayDisconnected(self.at(self.now)))
        self.connected = False
        epoch = self.epoch

        def resume() -> None:
            if epoch == self.epoch and self.bot is not None:
                self.connected = True
                self.gateway(self._available, delay=0.0)

        self.schedule(self.now + length, resume)
