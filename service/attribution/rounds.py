"""The round run after every event: decide what the settled fetches allow, log records, fold, fetch again.

One layer of `GuildAttribution` (see state.py), and the hot path of the attribution benchmark: `_advance`
settles fetches, runs a decision round when something changed (the single-use shortcut in `quick.py`, else
the slots of `diff.py` solved by `problem.py`), emits the decided joins in arrival order, folds settled
fetches no undecided join can reach into a new baseline, and asks for the next fetch when one is due.
"""

from __future__ import annotations

from service.attribution.diff import TimingBounds, UseSlot, build_slots
from service.attribution.effects import FetchInvites, LogRecord
from service.attribution.joins import JoinIntake
from service.attribution.problem import solve
from service.attribution.quick import decide_single_uses
from service.attribution.state import DUE_SLACK


class DecisionRounds(JoinIntake):
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
