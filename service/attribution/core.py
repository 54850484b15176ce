"""The per-guild attribution state machine: events in, effects out, no I/O and no clock of its own.

`GuildAttribution.handle(event)` takes one event of its guild (see `service.events`) and returns the effects
it asks for (see `effects.py`). `next_wake()` tells when it next needs a `ClockTick`. The multi-guild façade
`Attributor` (in `facade.py`) routes events and turns wake times into `WakeAt` effects.

How a join is decided:

1. It waits in an arrival-ordered queue. A fetch of the guild's invites is requested at once (one fetch at a
   time, never while Discord's retry_after runs or a failed fetch backs off).
2. Each answer is *settled* `gateway_latency` after it arrived: by then every join whose use it counted has
   been seen. Settled fetches are compared pairwise into use slots (`diff.py`), and every join's possible
   slots are computed from when its use can have happened (`joined_at` and the clock offset `clock.py`
   has learned, and the arrival time minus the latency) and what its invite allowed (created before, not
   expired, bots use none).
3. `problem.py` with `solver.py` finds the slots each join fills in *some* assignment consistent with the
   counts (if none exists, an assumption broke: the bounds are lifted step by step, never guessed). A join
   whose every assignment names one invite is decided: exact, new_invite, max_uses, vanity, or unknown
   (none). The rest wait for more fetches; a join is recorded ambiguous (candidates listed, nobody
   credited) once no later fetch can tell it apart, or when it has waited `max_join_wait`. Records leave
   in arrival order. An invite found gone may still get its final use count from the audit log
   (`InviteFinalUses`): the joins that may have used it are not recorded ambiguous before
   `audit_log_latency` after the fetch that found it gone. Deciding them earlier is safe, since the count
   only narrows what the counts allowed; giving up on them is what waits.
4. Decided joins stay in the problem as long as their use may explain a later count; settled fetches that no
   undecided join can reach are folded into a new baseline, and a snapshot is logged now and then.

Restarts and gateway gaps: the log's last snapshot and recent joins come in as `GuildRestored`; the time the
bot was away is *blind* until a `GuildAvailable` brings the member list, whose members who joined since
become offline joins, decided with the same machinery (offline_reconciled / offline_unknown). "Since" means
after the horizon: the guild's first sighting (or the restored snapshot less `restore_margin`), moved back to
the start of any blind span, which begins `gateway_latency` before a lost session and so may begin before the
first sighting. A join whose event was lost with the session is brought back, never left to the seen joins.
"""

from __future__ import annotations

import math
from collections import deque
from datetime import UTC, datetime

import attrs

from service.attribution.clock import ClockOffset
from service.attribution.config import AttributionConfig
from service.attribution.diff import (
    NONE_LABEL,
    VANITY_LABEL,
    FinalUses,
    Observation,
    SeenCreate,
    TimingBounds,
    UseSlot,
    build_slots,
)
from service.attribution.effects import Effect, FetchInvites, LogRecord
from service.attribution.problem import Join, Origin, solve
from service.attribution.quick import decide_single_uses
from service.attribution.verdict import JoinFacts
from service.events import (
    ClockTick,
    Event,
    FetchFailed,
    FetchRateLimited,
    GatewayDisconnected,
    GuildAvailable,
    GuildRestored,
    InviteCreated,
    InviteDeleted,
    InviteFinalUses,
    InvitesFetched,
    MemberInfo,
    MemberJoined,
    MemberRemoved,
)
from service.records import (
    CREDITING_KINDS,
    AttributionKind,
    InviteSnapshotTaken,
    InviteState,
    JoinRecorded,
    MemberLeft,
)

_SAME_INSTANT = 0.001  # two joined_at values this close are the same join
_FROM_GATEWAY = (GuildAvailable, InviteCreated, InviteDeleted, InviteFinalUses, MemberJoined, MemberRemoved)
#: A wake-up time counts as reached this close to it: WakeAt travels as a datetime (whole microseconds).
DUE_SLACK = 2e-6


@attrs.define
class _Present:
    joined_at: float | None  # Discord's joined_at, POSIX seconds
    arrival: float


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


class GuildAttribution:
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

    # ----------------------------------------------------------------- inputs

    def handle(self, event: Event) -> list[Effect]:
        at = getattr(event, "at", None)
        if at is not None and (ts := at.timestamp()) > self._now:
            self._now, self._now_dt = ts, at.astimezone(UTC)
        if self._horizon is None and not isinstance(event, GuildRestored | ClockTick):
            self._horizon = self._now
        match event:
            case GuildRestored():
                self._on_restored(event)
            case GuildAvailable():
                self._on_available(event)
            case GatewayDisconnected():
                if not any(end == math.inf for _, end in self._blind):
                    self._go_blind(event.at.timestamp() - self._latency, math.inf)
                self._dirty = True
            case InviteCreated():
                self._creates.setdefault(event.invite.code, SeenCreate(event.invite, self._now))
            case InviteDeleted():
                self._deletes[event.code] = self._now
                self._dirty = True
            case InviteFinalUses():
                deleted_at = event.deleted_at.timestamp() if event.deleted_at is not None else None
                final = FinalUses(event.uses, self._now, deleted_at, event.max_uses, event.inviter_id)
                self._finals[event.code] = final
                self._dirty = True
            case MemberJoined():
                self.guild_name = self.guild_name or event.guild_name
                self._on_join(event.member)
            case MemberRemoved():
                self._on_leave(event)
            case InvitesFetched():
                self._on_fetched(event)
            case FetchRateLimited():
                if self._answers(event.request_id):
                    self._blocked_until = max(self._blocked_until, event.at.timestamp() + event.retry_after)
            case FetchFailed():
                if self._answers(event.request_id):
                    self._fetch_failed()
            case ClockTick():
                pass
        if isinstance(event, _FROM_GATEWAY):
            self._last_gateway = self._now
        self._advance()
        out, self._out = self._out, []
        return out

    def next_wake(self) -> float | None:
        """When (bot clock, POSIX seconds) this guild next needs a ClockTick, if ever."""
        times = []
        if self._in_flight is not None:
            times.append(self._in_flight[1] + self._fetch_timeout)
        times.extend(f.answered + self._latency + _SAME_INSTANT for f in self._fetches[self._settled :])
        undecided = [j.arrival for j in self._joins if j.record is None]
        if undecided:
            times.append(min(undecided) + self._wait)
            if self._awaiting is not None:
                times.append(self._awaiting)
        if self._needs_fetch():
            times.append(self._fetch_ready_at())
        return min(times) if times else None

    @property
    def undecided(self) -> int:
        return sum(1 for j in self._joins if j.record is None)

    # --------------------------------------------------------------- handlers

    def _on_restored(self, event: GuildRestored) -> None:
        self.guild_name = event.guild_name or self.guild_name
        snapshot = event.snapshot
        gap_start = event.last_seen.timestamp() if event.last_seen is not None else None
        if snapshot is not None:
            taken = snapshot.timestamp.timestamp()
            self._baseline = self._observation(
                snapshot.invites, snapshot.vanity_code, snapshot.vanity_uses, taken, snapshot.timestamp
            )
            self._baseline = attrs.evolve(
                self._baseline, requested=taken - self.config.fetch_timeout.total_seconds()
            )
            self.vanity_code = snapshot.vanity_code
            self._snapshot_logged = taken
            gap_start = taken if gap_start is None else min(gap_start, taken)
        if gap_start is not None:
            # Until a member list says who joined meanwhile, the counts since then may hold unseen joins.
            self._horizon = gap_start - self.config.restore_margin.total_seconds()
            self._go_blind(gap_start - self._latency, math.inf)
        self._known.update(event.known_user_ids)
        for member in event.present:
            joined = member.joined_at.timestamp()
            self._present[member.user_id] = _Present(joined, joined)
            self._remember_joined(member.user_id, joined)
        for user_id, joined in (event.present_at or {}).items():
            self._present[user_id] = _Present(joined, joined)
            self._remember_joined(user_id, joined)
        for record in event.recent_joins:
            self._joins.append(self._restored_join(record))
            self._remember_joined(record.user_id, record.timestamp.timestamp())
        self._dirty = True

    def _restored_join(self, record: JoinRecorded) -> Join:
        label: str | None = None  # ambiguous in the log: it may have used anything
        if record.kind in CREDITING_KINDS and record.invite_code:
            label = record.invite_code
        elif record.kind is AttributionKind.VANITY:
            label = VANITY_LABEL
        elif record.kind is AttributionKind.UNKNOWN:
            label = NONE_LABEL
        ts = record.timestamp.timestamp()
        self._seq += 1
        facts = JoinFacts(
            self.guild_id, record.guild_name, record.user_id, record.username, record.display_name,
            record.timestamp, False, False, 0, False,
        )  # fmt: skip
        window = (ts - self._skew - self._latency, ts + self._skew)
        return Join(self._seq, Origin.RESTORED, facts, ts, ts, *window, fixed_label=label, record=record)

    def _on_available(self, event: GuildAvailable) -> None:
        self.guild_name = event.guild_name
        self.vanity_code = event.vanity_code
        now = self._now
        if event.members is not None:
            for member in sorted(event.members, key=lambda m: m.joined_at or self._now_dt):
                self._maybe_offline_join(member)
            # The member list accounts for whoever joined while the bot was away: every join in a blind span
            # that was not seen is now an offline join (see `_go_blind`), so no use is left to the seen ones.
            self._blind = [(start, end) for start, end in self._blind if end != math.inf]
        else:
            open_span = any(end == math.inf for _, end in self._blind)
            self._blind = [(start, now if end == math.inf else end) for start, end in self._blind]
            if not open_span and self._available and self._last_gateway is not None:
                self._go_blind(self._last_gateway - self._latency, now)  # an unannounced gap?
        if event.invites is not None and event.invites_requested_at is not None and self._in_flight is None:
            requested = event.invites_requested_at.timestamp()
            latest = self._fetches[-1] if self._fetches else self._baseline
            if latest is None or requested >= latest.answered:
                self._accept(
                    self._observation(event.invites, event.vanity_code, event.vanity_uses, now, self._now_dt),
                    requested,
                )
        else:
            self._refresh = True  # re-snapshot on every Ready: the baseline may predate a gap
        self._available = True
        self._dirty = True

    def _go_blind(self, start: float, end: float) -> None:
        """From `start` to `end` (bot clock) joins may have gone unseen: their events may have been lost."""
        self._blind.append((start, end))
        # Every join whose event may have been lost is this core's to record, so the horizon (members who
        # joined after it are) moves back to the span's start. It matters when a session drops within
        # `latency` of the guild's first sighting: a join just before that sighting may have had its
        # GUILD_MEMBER_ADD on its way, lost with the session. Left out of the member list's offline joins,
        # it would get no record, and its invite use, once the list drops the span, would be left to the
        # seen joins to explain (a used-up invite pinned on a member who never used it). If its event did
        # arrive, `_maybe_offline_join` knows the join already. `joined_at` is on Discord's clock: a join
        # at `start` on the bot's shows at `start + low` at the earliest.
        if self._horizon is not None:
            self._horizon = min(self._horizon, start + self._clock.bounds()[0] - _SAME_INSTANT)

    def _maybe_offline_join(self, member: MemberInfo) -> None:
        if member.joined_at is None or self._horizon is None:
            return
        joined = member.joined_at.timestamp()
        if joined <= self._horizon:
            return
        if any(abs(before - joined) <= _SAME_INSTANT for before in self._joined_at.get(member.user_id, ())):
            return  # a join already seen, whatever came after it (a leave may arrive after the next rejoin)
        present = self._present.get(member.user_id)
        if present is not None:
            if present.joined_at is not None and abs(present.joined_at - joined) <= _SAME_INSTANT:
                return
            if present.joined_at is None and abs(present.arrival - joined) <= self._latency + self._skew + 1:
                return
        self._add_join(member, Origin.OFFLINE, joined, (joined, joined))

    def _on_join(self, member: MemberInfo) -> None:
        joined = member.joined_at.timestamp() if member.joined_at is not None else None
        seen = self._joined_at.get(member.user_id, ())
        if joined is not None and any(abs(before - joined) <= _SAME_INSTANT for before in seen):
            return  # the same join sent again, maybe even after the member left: a rejoin has a new joined_at
        present = self._present.get(member.user_id)
        if present is not None:  # GUILD_MEMBER_ADD sent again for someone already here
            if joined is not None and present.joined_at is not None:
                if abs(present.joined_at - joined) <= _SAME_INSTANT:
                    return
            elif self._now - present.arrival <= self.config.duplicate_window.total_seconds():
                return
        if joined is not None:
            self._clock.observe(joined, self._now)
        self._add_join(member, Origin.LIVE, joined, (self._now - self._latency, self._now))

    def _add_join(
        self, member: MemberInfo, origin: Origin, joined: float | None, window: tuple[float, float]
    ) -> None:
        rejoin = member.user_id in self._known
        self._known.add(member.user_id)
        self._present[member.user_id] = _Present(joined, self._now)
        if joined is not None:
            self._remember_joined(member.user_id, joined)
        self._seq += 1
        facts = JoinFacts(
            self.guild_id, self.guild_name, member.user_id, member.username, member.display_name,
            member.joined_at or self._now_dt, member.bot, rejoin, member.flags, origin is Origin.OFFLINE,
        )  # fmt: skip
        join = Join(self._seq, origin, facts, joined, self._now, *window)
        join.lo, join.hi = self._window(join)
        self._joins.append(join)
        self._queue.append(join)
        if member.bot and not self.config.bots_use_invites:
            self._dirty = True  # nothing to wait for: a bot joins through OAuth2, not an invite

    def _remember_joined(self, user_id: str, joined: float) -> None:
        self._joined_at[user_id] = (*self._joined_at.get(user_id, ())[-7:], joined)

    def _on_leave(self, event: MemberRemoved) -> None:
        self._present.pop(event.user_id, None)
        leave = MemberLeft(timestamp=event.at, guild_id=self.guild_id, user_id=event.user_id)
        waiting = next((j for j in reversed(self._queue) if j.facts.user_id == event.user_id), None)
        if waiting is not None:
            waiting.held.append(leave)  # the log must show the join before the leave
        else:
            self._out.append(LogRecord(leave))

    def _on_fetched(self, event: InvitesFetched) -> None:
        if self._in_flight is None:
            return
        requested = self._in_flight[1]
        if not self._answers(event.request_id):
            return
        self._failures = 0
        if event.vanity_code is not None:
            self.vanity_code = event.vanity_code
        obs = self._observation(event.invites, self.vanity_code, event.vanity_uses, self._now, self._now_dt)
        self._accept(obs, requested)

    def _answers(self, request_id: int) -> bool:
        """Is this the answer to the fetch in flight? (A late answer to a timed-out fetch is ignored.)"""
        if self._in_flight is None or self._in_flight[0] != request_id:
            return False
        self._in_flight = None
        return True

    def _fetch_failed(self) -> None:
        self._failures += 1
        backoff = self.config.backoff_initial.total_seconds() * 2 ** min(self._failures - 1, 30)
        self._blocked_until = max(
            self._blocked_until, self._now + min(backoff, self.config.backoff_max.total_seconds())
        )

    # ------------------------------------------------------------ the machine

    def _observation(
        self,
        invites: tuple[InviteState, ...],
        vanity_code: str | None,
        vanity_uses: int | None,
        answered: float,
        answered_at: datetime,
    ) -> Observation:
        return Observation(
            {i.code: i for i in invites}, vanity_code, vanity_uses, answered, answered, answered_at
        )

    def _accept(self, obs: Observation, requested: float) -> None:
        # Built directly: attrs.evolve costs several times more, once per fetch.
        obs = Observation(
            obs.invites, obs.vanity_code, obs.vanity_uses, requested, obs.answered, obs.answered_at
        )
        if self._baseline is None:
            self._baseline = obs
            self._log_snapshot(obs)
        else:
            self._fetches.append(obs)
        self._refresh = False

    def _window(self, join: Join) -> tuple[float, float]:
        """When (bot clock) a join's invite use can have happened, from what is known of the clocks now."""
        if join.origin is Origin.RESTORED or join.joined_at is None:
            return join.lo, join.hi
        low, high = self._clock.bounds()
        lo, hi = join.joined_at - high, join.joined_at - low
        if join.origin is Origin.OFFLINE:
            return lo, min(hi, join.arrival)
        # A live join also used its invite no later than its event arrived, and at most `latency` before.
        lo, hi = max(lo, join.arrival - self._latency), min(hi, join.arrival)
        return (lo, hi) if lo <= hi else (join.arrival - self._latency, join.arrival)

    def _advance(self) -> None:
        if self._clock.bounds() != self._windows_from:  # they only narrow: narrower windows tell more apart
            self._windows_from = self._clock.bounds()
            for join in self._joins:
                if join.record is None:
                    join.lo, join.hi = self._window(join)
        now = self._now
        if self._in_flight is not None and now + DUE_SLACK >= self._in_flight[1] + self._fetch_timeout:
            self._in_flight = None
            self._fetch_failed()
        settled = self._settled
        while settled < len(self._fetches) and self._fetches[settled].answered + self._latency < now:
            settled += 1
        undecided = [j for j in self._joins if j.record is None]
        awaited = self._awaiting is not None and now + DUE_SLACK >= self._awaiting
        if undecided and (
            self._dirty
            or settled != self._settled
            or awaited
            or any(now + DUE_SLACK >= j.arrival + self._wait for j in undecided)  # overdue
        ):
            self._decide(settled)
        self._dirty = False
        self._settled = settled
        self._emit()
        self._compact()
        if self._needs_fetch() and now + DUE_SLACK >= self._fetch_ready_at():
            self._request_id += 1
            self._in_flight = (self._request_id, now)
            self._last_request = now
            self._out.append(FetchInvites(self.guild_id, self._request_id))

    def _decide(self, settled: int) -> None:
        if decide_single_uses(
            self._baseline,
            self._fetches[:settled],
            self._creates,
            self._deletes,
            self._blind,
            self._joins,
            now=self._now + DUE_SLACK,
            now_dt=self._now_dt,
            wait=self._wait,
            vanity_code=self.vanity_code,
            guild_name=self.guild_name,
            config=self.config,
        ):
            self._awaiting = None  # no slot of such a round awaits a final use count
            return  # the common round: the general path's answer without building the problem
        bounds = TimingBounds(self._latency, *self._clock.bounds())
        slots: list[UseSlot] = build_slots(
            self._baseline,
            self._fetches[:settled],
            self._creates,
            self._deletes,
            self._blind,
            bounds,
            self._finals,
            now=self._now + DUE_SLACK,
            final_wait=self._final_wait,
        )
        held = [s.awaiting_until for s in slots if s.awaiting_until is not None]
        self._awaiting = min(held) if held else None
        solve(
            self._joins,
            slots,
            now=self._now + DUE_SLACK,
            now_dt=self._now_dt,
            wait=self._wait,
            vanity_code=self.vanity_code,
            guild_name=self.guild_name,
            config=self.config,
        )

    def _emit(self) -> None:
        while self._queue and self._queue[0].record is not None:
            join = self._queue.popleft()
            assert join.record is not None
            self._out.append(LogRecord(join.record))
            self._out.extend(LogRecord(leave) for leave in join.held)

    def _compact(self) -> None:
        """Fold settled fetches that no undecided join can reach into a new baseline."""
        if self._baseline is None or self._settled == 0:
            return
        undecided = [j for j in self._joins if j.record is None]
        last = -1
        for k in range(self._settled):
            if any(j.lo <= self._fetches[k].answered for j in undecided):
                break
            last = k
        if last < 0:
            return
        base = self._fetches[last]
        del self._fetches[: last + 1]
        self._settled -= last + 1
        self._baseline = base
        cut = base.requested
        self._joins = [j for j in self._joins if j.record is None or j.hi > cut]
        self._creates = {code: c for code, c in self._creates.items() if c.arrived > base.requested}
        self._deletes = {c: t for c, t in self._deletes.items() if c in base.invites or c in self._creates}
        listed = [base, *self._fetches]
        self._finals = {
            code: final
            for code, final in self._finals.items()
            if final.arrived > cut or code in self._creates or any(code in obs.invites for obs in listed)
        }
        self._blind = [(start, end) for start, end in self._blind if end > cut]
        interval = self.config.snapshot_log_interval.total_seconds()
        if self._snapshot_logged is None or base.answered - self._snapshot_logged >= interval:
            self._log_snapshot(base)

    def _log_snapshot(self, obs: Observation) -> None:
        self._snapshot_logged = obs.answered
        record = InviteSnapshotTaken(
            timestamp=obs.answered_at or _dt(obs.answered),
            guild_id=self.guild_id,
            guild_name=self.guild_name,
            invites=tuple(obs.invites.values()),
            vanity_code=obs.vanity_code,
            vanity_uses=obs.vanity_uses,
        )
        self._out.append(LogRecord(record))

    def _needs_fetch(self) -> bool:
        if self._in_flight is not None:
            return False
        undecided = False
        for join in self._joins:  # a plain loop: this runs twice per event
            if join.record is None:
                undecided = True
                break
        if self._baseline is None:
            return undecided or self._available
        if self._refresh:
            return True
        if not undecided:
            return False
        # Some join's use may not be counted by any fetch asked so far.
        asked = (self._fetches[-1] if self._fetches else self._baseline).requested
        for join in self._joins:
            if join.hi > asked:
                return True
        return False

    def _fetch_ready_at(self) -> float:
        return max(self._blocked_until, self._last_request + self._fetch_gap)
