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
"""

from __future__ import annotations

import bisect
import functools
import heapq
import math
import random
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs

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


@attrs.frozen
class TrueJoin:
    user_id: str
    joined_at: datetime
    code: str | None  # None: no invite (discovery, bot); VANITY for the vanity URL
    staff_id: str | None
    t: float = 0.0  # when, on the bot's clock
    bot: bool = False


@attrs.frozen
class Outcome:
    truth: tuple[TrueJoin, ...]
    joins: tuple[JoinRecorded, ...]
    records: tuple[Record, ...]
    core_seconds: float  # time spent inside Attributor.handle
    served: tuple[float, ...] = ()  # when Discord counted the invites of each fetch the bot got back
    # code -> when it left the lists: by hand or expiry (hidden), or at its last use (used_up)
    hidden: dict[str, float] = attrs.field(factory=dict)
    used_up: dict[str, float] = attrs.field(factory=dict)
    audited: frozenset[str] = frozenset()  # deleted by hand, and the audit log entry reached the bot

    def oracle_right(self) -> int:
        """Staffed joins an oracle could credit from the same information, knowing exactly which fetch
        counted which join: those whose stretch between two counts holds no other human join with another
        source, and whose use shows in some count: the invite is still listed at the count closing the
        stretch, or its final count reached the bot in an audit log entry (deleted by hand), or it was used
        up by this one join (expired, deleted by hand without an entry reaching the bot, or used up by
        several joins in one stretch: such an invite's last uses show in no count).
        """
        cuts = sorted(self.served)
        groups: dict[int, list[str | None]] = {}
        for true in self.truth:
            if not true.bot:
                groups.setdefault(bisect.bisect_left(cuts, true.t), []).append(true.code)

        def credited(true: TrueJoin) -> bool:
            k = bisect.bisect_left(cuts, true.t)
            if true.staff_id is None or k == len(cuts) or set(groups[k]) != {true.code}:
                return False
            code = true.code or ""
            if self.hidden.get(code, math.inf) <= cuts[k] and code not in self.audited:
                return False
            return self.used_up.get(code, math.inf) > cuts[k] or groups[k].count(code) == 1

        return sum(1 for true in self.truth if credited(true))

    def score(self) -> Score:
        by_key: dict[tuple[str, datetime], list[JoinRecorded]] = {}
        for record in self.joins:
            by_key.setdefault((record.user_id, record.timestamp), []).append(record)
        truth = {(t.user_id, t.joined_at): t for t in self.truth}
        missing = [key for key in truth if key not in by_key]
        repeated = [key for key, records in by_key.items() if len(records) > 1]
        invented = [key for key in by_key if key not in truth]
        credited = wrong = right = 0
        for key, records in by_key.items():
            true = truth.get(key)
            for record in records:
                if record.staff_id is None:
                    continue
                credited += 1
                if true is None or record.staff_id != true.staff_id or record.invite_code != true.code:
                    wrong += 1
                else:
                    right += 1
        staffed = sum(1 for t in self.truth if t.staff_id is not None)
        return Score(
            joins=len(self.truth),
            staffed=staffed,
            credited=credited,
            wrong=wrong,
            right=right,
            oracle=self.oracle_right(),
            missing=len(missing),
            repeated=len(repeated),
            invented=len(invented),
            kinds=Counter(str(r.kind) for r in self.joins),
            core_seconds=self.core_seconds,
        )


@attrs.frozen
class Score:
    joins: int
    staffed: int  # joins through an invite that has a staff member
    credited: int  # records that credit a staff member
    wrong: int  # ... to the wrong one (or the wrong invite)
    right: int
    oracle: int  # staffed joins an oracle knowing which fetch counted which join could credit
    missing: int  # joins without a record
    repeated: int  # joins with more than one record
    invented: int  # records for joins that never happened
    kinds: Counter[str]
    core_seconds: float

    @property
    def precision(self) -> float:
        return 1.0 if self.credited == 0 else self.right / self.credited

    @property
    def recall(self) -> float:
        return 1.0 if self.staffed == 0 else self.right / self.staffed

    @property
    def oracle_recall(self) -> float:
        return 1.0 if self.staffed == 0 else self.oracle / self.staffed


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
