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

The machine is one object built in layers, each in a module of its own: `state.py` (its fields),
`fetching.py` (asking for the invites, taking the answers, snapshots), `joins.py` (joins, leaves, restores,
member lists, blind spans), `rounds.py` (the round after every event: decide, emit, fold, fetch) and this
module, the entry: `handle` routes each event to its layer, then runs the round.
"""

from __future__ import annotations

import math
from datetime import UTC

from service.attribution.diff import FinalUses, SeenCreate
from service.attribution.effects import Effect
from service.attribution.rounds import DecisionRounds
from service.attribution.state import _SAME_INSTANT, DUE_SLACK
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
    MemberJoined,
    MemberRemoved,
)

__all__ = ["DUE_SLACK", "GuildAttribution"]

_FROM_GATEWAY = (GuildAvailable, InviteCreated, InviteDeleted, InviteFinalUses, MemberJoined, MemberRemoved)
_NO_HORIZON = (GuildRestored, ClockTick)  # events that do not count as the guild's first sighting


class GuildAttribution(DecisionRounds):
    """One guild's attribution: `handle(event)` returns the effects to perform, `next_wake()` when to tick."""

    # ----------------------------------------------------------------- inputs

    def handle(self, event: Event) -> list[Effect]:
        at = getattr(event, "at", None)
        if at is not None and (ts := at.timestamp()) > self._now:
            self._now, self._now_dt = ts, at.astimezone(UTC)
        if self._horizon is None and not isinstance(event, _NO_HORIZON):
            self._horizon = self._now
        # The event classes are unrelated, so the order of the cases is free: the common ones go first
        # (each case is an isinstance check, and this runs ~3 times per join).
        match event:
            case MemberJoined():
                self.guild_name = self.guild_name or event.guild_name
                self._on_join(event.member)
            case InvitesFetched():
                self._on_fetched(event)
            case ClockTick():
                pass
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
            case MemberRemoved():
                self._on_leave(event)
            case FetchRateLimited():
                if self._answers(event.request_id):
                    self._blocked_until = max(self._blocked_until, event.at.timestamp() + event.retry_after)
            case FetchFailed():
                if self._answers(event.request_id):
                    self._fetch_failed()
        if isinstance(event, _FROM_GATEWAY):
            self._last_gateway = self._now
        self._advance()
        out, self._out = self._out, []
        return out

    def next_wake(self) -> float | None:
        """When (bot clock, POSIX seconds) this guild next needs a ClockTick, if ever."""
        # Runs after every event: one pass over each list and no list built. Adding the same constant
        # after taking the minimum gives the same float (rounding is monotonic).
        wake: float | None = None
        if self._in_flight is not None:
            wake = self._in_flight[1] + self._fetch_timeout
        if self._settled < len(self._fetches):
            first = min(f.answered for f in self._fetches[self._settled :]) + self._latency + _SAME_INSTANT
            wake = first if wake is None else min(wake, first)
        earliest: float | None = None
        for join in self._joins:
            if join.record is None and (earliest is None or join.arrival < earliest):
                earliest = join.arrival
        if earliest is not None:
            wake = earliest + self._wait if wake is None else min(wake, earliest + self._wait)
            if self._awaiting is not None:
                wake = min(wake, self._awaiting)
        if self._needs_fetch():
            ready = self._fetch_ready_at()
            wake = ready if wake is None else min(wake, ready)
        return wake

    @property
    def undecided(self) -> int:
        return sum(1 for j in self._joins if j.record is None)
