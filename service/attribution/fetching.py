"""Asking for a guild's invites and taking the answers: when a fetch is due, timeouts and backoff, snapshots.

One layer of `GuildAttribution` (see state.py): the fetch in flight, Discord's retry_after, the baseline
and the fetches answered since, and the `InviteSnapshotTaken` records that restarts reconcile from. Deciding
what the counts say is `rounds.py`'s; this part only keeps the counts coming.
"""

from __future__ import annotations

from datetime import UTC, datetime

from service.attribution.diff import Observation
from service.attribution.effects import LogRecord
from service.attribution.state import GuildState
from service.events import InvitesFetched
from service.records import InviteSnapshotTaken, InviteState


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


class InviteFetching(GuildState):
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
