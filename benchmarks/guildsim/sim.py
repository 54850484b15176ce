"""`GuildSim`: the simulated guild and Discord, driving the attribution core as its actor would.

Discrete events on a heap, on the bot's clock: members join, leave and rejoin, staff create and delete
invites, gateway events arrive after a latency, fetches are answered, rate-limited or failed, the bot
restarts and loses its session. What the simulation does and does not do is in the package docstring
(`benchmarks/guildsim/__init__.py`); the knobs are `scenario.py`'s, the scoring `outcome.py`'s.
"""

from __future__ import annotations

import functools
import heapq
import math
import random
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import attrs

from benchmarks.guildsim.outcome import Outcome, TrueJoin
from benchmarks.guildsim.scenario import DISCORD_EPOCH_MS, GUILD, T0, VANITY, Scenario
from service.attribution import AttributionConfig, Attributor, FetchInvites, LogRecord, WakeAt, restore_events
from service.events import (
    ClockTick,
    Event,
    FetchFailed,
    FetchRateLimited,
    GatewayDisconnected,
    GuildAvailable,
    InviteCreated,
    InviteDeleted,
    InviteFinalUses,
    InvitesFetched,
    MemberInfo,
    MemberJoined,
    MemberRemoved,
)
from service.records import InviteState, JoinRecorded, Record


@attrs.define
class _Invite:
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


class GuildSim:
    def __init__(self, scenario: Scenario, config: AttributionConfig | None = None) -> None:
        self.sc = scenario
        self.config = config or AttributionConfig()
        self.rng = random.Random(scenario.seed)
        self.audit_rng = random.Random(f"audit {scenario.seed}")
        self.offset = self.rng.uniform(-scenario.skew, scenario.skew)  # Discord = bot + offset
        self.heap: list[tuple[float, int, Callable[[], None]]] = []
        self.seq = 0
        self.now = 0.0
        self.invites: dict[str, _Invite] = {}
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

    def _new_invite(self, t: float, **overrides: Any) -> _Invite:
        self.codes += 1
        staff_id, staff_name = self.rng.choice(self.staff)
        expiry = self.rng.choice(self.sc.expiry_choices)
        invite = _Invite(
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

    def alive(self, invite: _Invite, t: float) -> bool:
        if invite.deleted:
            return False
        return invite.expires_at is None or self.discord(t) < invite.expires_at

    # ------------------------------------------------------------ the bot

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

    def join(self, user: str | None = None) -> None:
        t = self.now
        rng = self.rng
        bot = rng.random() < self.sc.p_bot
        if user is None:
            age = (
                rng.uniform(0, 3 * 86400) if rng.random() < self.sc.p_young else rng.uniform(30, 3000) * 86400
            )
            user = self._snowflake(-age)
        if user in self.members:
            return
        code: str | None = None
        raid = self.sc.raid_window[0] <= t < self.sc.raid_window[1]
        roll = rng.random()
        if bot or roll < self.sc.p_discovery:
            code = None
        elif roll < self.sc.p_discovery + self.sc.p_vanity:
            code = VANITY
        elif raid and rng.random() < self.sc.raid_invite_share and "raid" in self.invites:
            code = "raid" if self.alive(self.invites["raid"], t) else None
        else:
            usable = [i for i in self.invites.values() if self.alive(i, t) and i.code != "raid"]
            code = rng.choice(usable).code if usable else None
        staff_id = None
        if code == VANITY:
            self.vanity_uses += 1
        elif code is not None:
            invite = self.invites[code]
            invite.uses += 1
            staff_id = invite.inviter_id
            if invite.max_uses and invite.uses >= invite.max_uses:
                invite.deleted = True  # Discord deletes an invite at its last use
                self.used_up[code] = t
                used_up = code
                self.gateway(lambda now: InviteDeleted(GUILD, self.at(now), code=used_up))
        joined_at = self.discord(t)
        self.truth.append(TrueJoin(user, joined_at, code, staff_id, t, bot))
        self.members[user] = joined_at
        member = MemberInfo(user, user, user, joined_at=joined_at, bot=bot)
        self.gateway(lambda now: MemberJoined(GUILD, self.at(now), member=member))
        if rng.random() < self.sc.p_duplicate:
            self.gateway(
                lambda now: MemberJoined(GUILD, self.at(now), member=member), delay=rng.uniform(1, 30)
            )
        if rng.random() < self.sc.p_leave:
            self.schedule(t + rng.uniform(5, 600), lambda: self.leave(user, joined_at, 0))

    def leave(self, user: str, joined_at: datetime, tries: int) -> None:
        if self.members.get(user) != joined_at:
            return
        # Only once the join is in the log: a member who joins and leaves unseen is invisible to any tracker.
        if (user, joined_at) not in self.recorded or not self.connected or self.bot is None:
            if tries < 20:
                self.schedule(self.now + 60, lambda: self.leave(user, joined_at, tries + 1))
            return
        del self.members[user]
        self.gateway(lambda now: MemberRemoved(GUILD, self.at(now), user_id=user))
        if self.rng.random() < 0.5:  # and comes back
            self.schedule(self.now + self.rng.uniform(1, 900), lambda: self.join(user))

    def create_invite(self) -> None:
        invite = self._new_invite(self.now)
        state = invite.state()
        self.gateway(lambda now: InviteCreated(GUILD, self.at(now), invite=state))

    def delete_invite(self) -> None:
        candidates = [
            i
            for i in self.invites.values()
            if self.alive(i, self.now) and i.code != "raid" and not (i.max_uses and i.uses == i.max_uses - 1)
        ]
        if candidates:
            invite = self.rng.choice(candidates)
            invite.deleted = True
            self.hidden[invite.code] = self.now
            self.gateway(lambda now: InviteDeleted(GUILD, self.at(now), code=invite.code))
            self._audit_entry(invite)

    def _audit_entry(self, invite: _Invite) -> None:
        """The audit log's INVITE_DELETE entry, with the invite's fields as they were at its deletion."""
        sc, rng = self.sc, self.audit_rng
        if rng.random() < sc.p_audit_lost:
            return
        late = rng.random() < sc.p_audit_late
        delay = rng.uniform(*sc.audit_late) if late else rng.uniform(*sc.audit_latency)
        state, deleted_at = invite.state(), self.discord(self.now)

        def entry(now: float) -> Event:
            self.audited.add(state.code)
            return InviteFinalUses(
                GUILD,
                self.at(now),
                code=state.code,
                uses=state.uses,
                max_uses=state.max_uses,
                inviter_id=state.inviter_id,
                deleted_at=deleted_at,
            )

        self.gateway(entry, delay=delay)

    # ------------------------------------------------------------- running

    def run(self) -> Outcome:
        sc = self.sc
        for _ in range(sc.initial_invites):
            self._new_invite(-self.rng.uniform(60, 86400), expires_at=None)
        if sc.raid_invite_share > 0:
            self._new_invite(sc.raid_window[0] - 30, code="raid", max_uses=0, expires_at=None)
        end = max(sc.join_times, default=0.0)
        for t in sc.join_times:
            self.schedule(t, self.join)
        for t in _poisson(self.rng, sc.create_every, end):
            self.schedule(t, self.create_invite)
        for t in _poisson(self.rng, sc.delete_every, end):
            self.schedule(t, self.delete_invite)
        for down_at, down_for in sc.restarts:
            self.schedule(down_at, functools.partial(self.stop_bot, down_for))
        for at, length in sc.gaps:
            self.schedule(at, functools.partial(self.lose_session, length))
        self.start_bot()
        horizon = end + 4 * 3600 + sum(d for _, d in sc.restarts)
        while self.heap:
            t, _, action = heapq.heappop(self.heap)
            if t > horizon:
                break
            self.now = max(self.now, t)
            action()
        joins = tuple(r for r in self.log if isinstance(r, JoinRecorded))
        for invite in self.invites.values():
            if invite.expires_at is not None:
                expired = invite.expires_at.timestamp() - T0.timestamp() - self.offset
                self.hidden[invite.code] = min(self.hidden.get(invite.code, math.inf), expired)
        served = tuple(self.served)
        return Outcome(
            tuple(self.truth),
            joins,
            tuple(self.log),
            self.core_seconds,
            served,
            dict(self.hidden),
            dict(self.used_up),
            frozenset(self.audited),
        )


def _poisson(rng: random.Random, mean_gap: float, end: float) -> list[float]:
    times: list[float] = []
    t = 0.0
    while mean_gap > 0:
        t += rng.expovariate(1 / mean_gap)
        if t >= end:
            return times
        times.append(t)
    return times
