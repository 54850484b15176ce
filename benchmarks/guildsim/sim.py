"""`GuildSim`: the simulated guild and Discord, driving the attribution core as its actor would.

In three layers, like the core it drives: the state and the clock (`state.py`), the bot's side
(`bot.py`), and here what the guild's people do and the run itself.

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
from datetime import datetime

from benchmarks.guildsim.bot import SimBot
from benchmarks.guildsim.outcome import Outcome, TrueJoin
from benchmarks.guildsim.scenario import GUILD, T0, VANITY
from benchmarks.guildsim.state import SimInvite
from service.events import (
    Event,
    InviteCreated,
    InviteDeleted,
    InviteFinalUses,
    MemberInfo,
    MemberJoined,
    MemberRemoved,
)
from service.records import JoinRecorded


class GuildSim(SimBot):
    """A guild on Discord: members join (through invites, the vanity URL or neither), leave and come back;
    staff create and delete invites; `run()` plays the scenario and scores the log the bot wrote."""

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

    def _audit_entry(self, invite: SimInvite) -> None:
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
