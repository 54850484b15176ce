"""Pure snapshot comparison: from one guild's successive invite fetches, the *use slots* joins must fill.

Times here are bot-clock POSIX seconds (floats). A fetch counted uses at some instant between when it was
requested and when its answer arrived, so a use counted by fetch k but not by fetch k-1 happened in
(requested[k-1], answered[k]]. Comparing each pair of consecutive fetches gives slots:

- EXACT: a listed code's uses rose by n — exactly n joins used it in that stretch of time.
- NEW: a code listed for the first time with n uses (created and used since the previous fetch).
- MAX: a code vanished one use short of its max_uses — Discord deletes an invite at its last use, so exactly
  one join used it (DESIGN.md's max_uses rule). When the core saw the INVITE_DELETE, that use happened within
  `latency` before the event arrived; a deletion nobody could have caused is a staff member's.
- VANISHED: a code vanished otherwise (deleted by hand, expired, more than one use short): 0..room uses that
  nobody will ever count. Such a code is a candidate, never a certainty, unless the audit log gave its use
  count at its deletion by hand (`FinalUses`, also for a MAX code deleted by hand): then it is EXACT with
  the uses since it was last counted, before the deletion, or no slot at all when there were none. While
  that count may still come (until `final_wait` after the fetch that found the code gone), the VANISHED
  slot is *awaiting*: the joins that may have filled it are not yet given up on as ambiguous.
- VANITY: the vanity URL's uses rose (exact when both counts are known, else 0..any).
- NONE (no invite at all: discovery, a bot added through OAuth2, a widget), PRE (a use counted before the
  baseline fetch: its invite cannot be told) and FUTURE (not counted by any compared fetch yet): any number.

Spans of time in which joins may have gone unseen (a gateway gap without a member list) are *blind*: the
slots overlapping them lose their lower bound, since an unseen join may account for those uses.
"""

from __future__ import annotations

import enum
import itertools
import math
from collections.abc import Mapping, Sequence
from datetime import datetime

import attrs

from service.records import InviteState

NONE_LABEL = "\x00none"
ANY_LABEL = "\x00any"
VANITY_LABEL = "\x00vanity"


class SlotKind(enum.Enum):
    EXACT = "exact"
    NEW = "new"
    MAX = "max"
    VANISHED = "vanished"
    VANITY = "vanity"
    NONE = "none"
    PRE = "pre"
    FUTURE = "future"


@attrs.frozen
class Observation:
    """One fetch of a guild's invites, and when (bot clock) it was requested and answered."""

    invites: Mapping[str, InviteState]
    vanity_code: str | None
    vanity_uses: int | None
    requested: float
    answered: float
    answered_at: datetime | None = None  # the same instant as `answered`, as the event gave it


@attrs.frozen
class SeenCreate:
    """An INVITE_CREATE the core received at `arrived` (bot clock)."""

    invite: InviteState
    arrived: float


@attrs.frozen
class FinalUses:
    """An invite's use count when a staff member deleted it, from the audit log (`InviteFinalUses`)."""

    uses: int
    arrived: float  # bot clock: the entry arrived then, so the deletion happened at or before it
    deleted_at: float | None = None  # Discord's clock: when the entry was made
    max_uses: int | None = None
    inviter_id: str | None = None


@attrs.frozen
class UseSlot:
    label: str  # the invite code, or one of the *_LABEL markers
    kind: SlotKind
    low: int
    high: int | None  # None: unbounded
    start: float  # the uses happened after this instant (bot clock)...
    end: float  # ...and at or before this one
    invite: InviteState | None = None
    uses_before: int | None = None
    uses_after: int | None = None
    wide_start: float | None = None  # MAX narrowed to its INVITE_DELETE: where the uses could start otherwise
    awaiting_until: float | None = None  # VANISHED whose final use count may still arrive until then

    def reachable_from(self, lo: float, hi: float) -> bool:
        """Could a join whose use happened somewhere in [lo, hi] have filled this slot?"""
        return hi > self.start and lo <= self.end

    def relaxed(self) -> UseSlot:
        """The same slot without its lower bound: its uses may belong to joins nobody saw."""
        if self.kind is SlotKind.MAX:  # then deleted by hand: used or not before its deletion, not after
            start = self.start if self.wide_start is None else self.wide_start
            return attrs.evolve(self, kind=SlotKind.VANISHED, low=0, start=start, wide_start=None)
        return attrs.evolve(self, low=0)


@attrs.frozen
class TimingBounds:
    latency: float  # gateway_latency, seconds
    offset_low: float  # Discord's clock minus the bot's is at least this (seconds)...
    offset_high: float  # ...and at most this


def build_slots(
    baseline: Observation | None,
    fetches: Sequence[Observation],
    creates: Mapping[str, SeenCreate],
    deletes: Mapping[str, float],
    blind: Sequence[tuple[float, float]],
    bounds: TimingBounds,
    finals: Mapping[str, FinalUses] | None = None,
    *,
    now: float = math.inf,
    final_wait: float = 0.0,
) -> list[UseSlot]:
    """Every slot from `baseline` through `fetches` (all of them settled: every join they count was seen).

    `finals` are the final use counts the audit log gave for invites deleted by hand; a code found gone by
    a fetch answered less than `final_wait` before `now` may still get one (its slot is awaiting)."""
    finals = finals or {}
    slots = [UseSlot(NONE_LABEL, SlotKind.NONE, 0, None, -math.inf, math.inf)]
    if baseline is None:
        slots.append(UseSlot(ANY_LABEL, SlotKind.FUTURE, 0, None, -math.inf, math.inf))
        return slots
    slots.append(UseSlot(ANY_LABEL, SlotKind.PRE, 0, None, -math.inf, baseline.answered))
    chain = [baseline, *fetches]
    listed: dict[str, int] = {code: invite.uses for code, invite in baseline.invites.items()}
    for prev, cur in itertools.pairwise(chain):
        start, end = prev.requested, cur.answered
        for code, invite in cur.invites.items():
            before = prev.invites.get(code)
            if before is not None:
                slots.extend(_rise(code, invite, before.uses, start, end))
            elif code not in listed:
                slots.extend(_new(code, invite, start, end, creates.get(code), bounds))
            else:  # listed, missing, listed again: a glitch in Discord's lists; trust no count from it
                rise = max(0, invite.uses - listed[code])
                slots.append(UseSlot(code, SlotKind.VANISHED, 0, rise, start, end, invite))
            listed[code] = invite.uses
        awaiting = cur.answered + final_wait if cur.answered + final_wait > now else None
        for code, invite in prev.invites.items():
            if code not in cur.invites:
                deleted = deletes.get(code)
                found = _vanished(code, invite, invite.uses, start, end, deleted, bounds, finals.get(code))
                slots.extend(_awaiting(found, awaiting))
        slots.extend(_vanity(prev, cur, start, end))
    for code, seen in creates.items():
        if code in listed:
            continue
        # Created at or before `created_by`; the first fetch asked after that would list the invite had it
        # still existed, so its uses (if any) lie between its creation and that fetch.
        created_after, created_by = seen.arrived - bounds.latency, seen.arrived
        if seen.invite.created_at is not None:
            created_after = max(created_after, seen.invite.created_at.timestamp() - bounds.offset_high)
            created_by = min(created_by, seen.invite.created_at.timestamp() - bounds.offset_low)
        gone = next((obs for obs in chain if obs.requested >= created_by), None)
        if gone is None:
            continue
        found = _vanished(
            code,
            seen.invite,
            seen.invite.uses,
            created_after,
            gone.answered,
            deletes.get(code),
            bounds,
            finals.get(code),
        )
        if gone.answered + final_wait > now:
            found = _awaiting(found, gone.answered + final_wait)
        # Gone before the baseline: the baseline may be a fetch answered just now (the first of a guild), and
        # joins that used the invite may still be on their way; such a use is never relied on.
        slots.extend(slot.relaxed() if gone is baseline else slot for slot in found)
    last = chain[-1]
    slots.append(UseSlot(ANY_LABEL, SlotKind.FUTURE, 0, None, last.requested, math.inf))
    return [
        slot.relaxed()
        if slot.low > 0 and any(slot.start < b_end and slot.end > b_start for b_start, b_end in blind)
        else slot
        for slot in slots
    ]


def _rise(code: str, invite: InviteState, before: int, start: float, end: float) -> list[UseSlot]:
    rise = invite.uses - before
    if rise > 0:
        return [UseSlot(code, SlotKind.EXACT, rise, rise, start, end, invite, before, invite.uses)]
    if rise < 0:  # a count went backwards (recreated code?): uses in between are unknowable
        return [UseSlot(code, SlotKind.VANISHED, 0, None, start, end, invite)]
    return []


def _new(
    code: str, invite: InviteState, start: float, end: float, created: SeenCreate | None, bounds: TimingBounds
) -> list[UseSlot]:
    if invite.uses <= 0:
        return []
    if invite.created_at is not None:  # nobody used it before it existed
        start = max(start, invite.created_at.timestamp() - bounds.offset_high)
    if created is not None:
        start = max(start, created.arrived - bounds.latency)
    return [UseSlot(code, SlotKind.NEW, invite.uses, invite.uses, start, end, invite, 0, invite.uses)]


def _vanished(
    code: str,
    invite: InviteState,
    uses: int,
    start: float,
    end: float,
    deleted_at: float | None,
    bounds: TimingBounds,
    final: FinalUses | None = None,
) -> list[UseSlot]:
    room = invite.max_uses - uses if invite.max_uses > 0 else None
    if room is not None and room <= 0:
        return []  # already used up: its deletion took no use
    if final is not None:
        # Never used after its INVITE_DELETE arrived, either: the slot stays within the VANISHED one it
        # replaces, so a join decided before the count came is still decided the same with it.
        gone_by = min(end, deleted_at) if deleted_at is not None and start < deleted_at else end
        counted = _finalised(code, invite, uses, start, gone_by, room, final, bounds)
        if counted is not None:
            return counted
    expired = invite.expires_at is not None and invite.expires_at.timestamp() - bounds.offset_high <= end
    if room == 1 and not expired:
        if deleted_at is None:
            return [UseSlot(code, SlotKind.MAX, 1, 1, start, end, invite, uses, uses + 1)]
        # Discord deletes an invite at its last use; the INVITE_DELETE then arrives within `latency`.
        max_start, max_end = max(start, deleted_at - bounds.latency), min(end, deleted_at)
        if max_start < max_end:
            return [UseSlot(code, SlotKind.MAX, 1, 1, max_start, max_end, invite, uses, uses + 1, start)]
    if deleted_at is not None and start < deleted_at:
        end = min(end, deleted_at)  # nobody used it after it was deleted
    return [UseSlot(code, SlotKind.VANISHED, 0, room, start, end, invite, uses, None)]


def _finalised(
    code: str,
    invite: InviteState,
    uses: int,
    start: float,
    end: float,
    room: int | None,
    final: FinalUses,
    bounds: TimingBounds,
) -> list[UseSlot] | None:
    """The slot of a code that vanished in (start, end] and whose use count at its deletion by hand the
    audit log gave: exactly final − last counted uses, between `start` and the deletion. None when the
    count cannot be this disappearance's (another invite under the same code, a deletion outside the
    stretch, a used-up invite: the MAX rule knows better when its use was), and the slot stays as it was."""
    added = final.uses - uses
    if added < 0 or (room is not None and added > room):
        return None
    if final.max_uses is not None and final.max_uses != invite.max_uses:
        return None
    if None not in (final.inviter_id, invite.inviter_id) and final.inviter_id != invite.inviter_id:
        return None
    if invite.max_uses > 0 and final.uses >= invite.max_uses:
        return None  # used up: Discord deleted it at its last use, not a staff member
    deleted_by = final.arrived
    if final.deleted_at is not None:
        if final.deleted_at - bounds.offset_high > end:
            return None  # deleted after this fetch found the code gone
        deleted_by = min(deleted_by, final.deleted_at - bounds.offset_low)
    if deleted_by <= start:
        return None  # deleted before it was last counted
    if added == 0:
        return []  # deleted unused since it was last counted: nobody's candidate
    end = min(end, deleted_by)
    return [UseSlot(code, SlotKind.EXACT, added, added, start, end, invite, uses, final.uses)]


def _awaiting(slots: list[UseSlot], until: float | None) -> list[UseSlot]:
    """Mark the VANISHED slots among `slots` as awaiting their final count until `until` (None: no more)."""
    if until is None:
        return slots
    return [attrs.evolve(s, awaiting_until=until) if s.kind is SlotKind.VANISHED else s for s in slots]


def _vanity(prev: Observation, cur: Observation, start: float, end: float) -> list[UseSlot]:
    if cur.vanity_code is None:
        return []
    if prev.vanity_code == cur.vanity_code and prev.vanity_uses is not None and cur.vanity_uses is not None:
        rise = cur.vanity_uses - prev.vanity_uses
        if rise > 0:
            return [
                UseSlot(
                    VANITY_LABEL,
                    SlotKind.VANITY,
                    rise,
                    rise,
                    start,
                    end,
                    None,
                    prev.vanity_uses,
                    cur.vanity_uses,
                )
            ]
        if rise == 0:
            return []
    return [UseSlot(VANITY_LABEL, SlotKind.VANITY, 0, None, start, end)]
