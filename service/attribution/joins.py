"""Who joined: live joins, joins restored from the log, offline joins from member lists, leaves, blind spans.

One layer of `GuildAttribution` (see state.py): it turns gateway and restore events into `Join`s with the
window in which each one's invite use can have happened, queued in arrival order for `rounds.py` to decide.
Duplicates (a GUILD_MEMBER_ADD sent again, a member list repeating a join already seen) stop here.
"""

from __future__ import annotations

import math

import attrs

from service.attribution.diff import NONE_LABEL, VANITY_LABEL
from service.attribution.effects import LogRecord
from service.attribution.fetching import InviteFetching
from service.attribution.problem import Join, Origin
from service.attribution.state import _SAME_INSTANT, _Present
from service.attribution.verdict import JoinFacts
from service.events import GuildAvailable, GuildRestored, MemberInfo, MemberRemoved
from service.records import CREDITING_KINDS, AttributionKind, JoinRecorded, MemberLeft


class JoinIntake(InviteFetching):
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
