"""One guild's open attribution problem: its joins, the slots each could fill, the decisions that follow."""

from __future__ import annotations

import bisect
import enum
from collections.abc import Iterator, Sequence
from datetime import datetime

import attrs

from service.attribution.config import AttributionConfig
from service.attribution.diff import NONE_LABEL, SlotKind, UseSlot
from service.attribution.solver import possible_options
from service.attribution.verdict import JoinFacts, decide, told_apart
from service.records import InviteState, JoinRecorded, MemberLeft


class Origin(enum.Enum):
    LIVE = "live"  # its GUILD_MEMBER_ADD reached the bot
    OFFLINE = "offline"  # found in a member list: it joined while the bot was not listening
    RESTORED = "restored"  # decided before a restart; still explains uses in the counts after the snapshot


@attrs.define(eq=False)
class Join:
    seq: int
    origin: Origin
    facts: JoinFacts
    joined_at: float | None  # Discord's joined_at, POSIX seconds
    arrival: float  # bot clock
    lo: float  # the invite use happened in [lo, hi] (bot clock); see `GuildAttribution._window`
    hi: float
    fixed_label: str | None = None  # RESTORED: the invite the log credits (a label), None if it has none
    record: JoinRecorded | None = None  # set once decided
    held: list[MemberLeft] = attrs.Factory(list)  # leaves to log right after this join


class SlotIndex:
    """Slots by time, so that finding the ones a join can reach does not scan them all: most slots span
    the seconds between two fetches; the few long ones (no invite, before the baseline, after the last
    fetch, an invite whose creation and disappearance lie far apart) are checked for every join."""

    _LONG = 600.0  # seconds

    def __init__(self, slots: Sequence[UseSlot]) -> None:
        self.slots = slots
        self._long = [i for i, s in enumerate(slots) if not s.end - s.start <= self._LONG]
        short = sorted((s.start, i) for i, s in enumerate(slots) if s.end - s.start <= self._LONG)
        self._starts = [start for start, _ in short]
        self._short = [i for _, i in short]
        self._span = max((slots[i].end - slots[i].start for i in self._short), default=0.0)

    def near(self, lo: float, hi: float) -> list[int]:
        """Every slot that may overlap [lo, hi] (and a few that do not), in slot order."""
        first = bisect.bisect_left(self._starts, lo - self._span)
        last = bisect.bisect_left(self._starts, hi)
        return sorted([*self._long, *self._short[first:last]])


def options_of(join: Join, index: SlotIndex, bots_use_invites: bool) -> tuple[int, ...]:
    """The slots `join` can reach: in time, and allowed by what it is and by what the invite allowed."""
    slots = index.slots
    found: list[int] = []
    for index_ in index.near(join.lo, join.hi):
        slot = slots[index_]
        if not slot.reachable_from(join.lo, join.hi):
            continue
        if slot.kind in (SlotKind.PRE, SlotKind.FUTURE):
            found.append(index_)
        elif slot.kind is SlotKind.NONE:
            if join.fixed_label in (None, NONE_LABEL) or join.origin is not Origin.RESTORED:
                found.append(index_)
        elif join.facts.bot and not bots_use_invites:
            continue
        elif (
            join.origin is Origin.RESTORED and join.fixed_label is not None and slot.label != join.fixed_label
        ):
            continue
        elif (
            slot.invite is not None and join.joined_at is not None and not usable(slot.invite, join.joined_at)
        ):
            continue
        else:
            found.append(index_)
    if not found:  # a logged join nothing here explains: let it sit anywhere rather than contradict the log
        found = [i for i, slot in enumerate(slots) if slot.kind is SlotKind.NONE]
    return tuple(found)


def usable(invite: InviteState, joined_at: float) -> bool:
    # Discord's own clock on both sides: nobody joins through an invite before it exists or after it expired.
    if invite.created_at is not None and joined_at < invite.created_at.timestamp():
        return False
    return invite.expires_at is None or joined_at <= invite.expires_at.timestamp()


def solve(
    joins: Sequence[Join],
    slots: list[UseSlot],
    *,
    now: float,
    now_dt: datetime,
    wait: float,
    vanity_code: str | None,
    guild_name: str,
    config: AttributionConfig,
) -> None:
    """Decide every undecided join that the counts tell apart, or that is final; sets `Join.record`."""
    index = SlotIndex(slots)
    options = [options_of(join, index, config.bots_use_invites) for join in joins]
    reachable = {index for found in options for index in found}
    # An invite one use short of its max that vanished when no join could have used it: deleted by hand.
    slots = [s.relaxed() if s.kind is SlotKind.MAX and i not in reachable else s for i, s in enumerate(slots)]
    classes: dict[tuple[int, ...], list[Join]] = {}
    for join, found in zip(joins, options, strict=True):
        classes.setdefault(found, []).append(join)
    keys = list(classes)
    possible: list[set[int]] | None = None
    for attempt in _relaxations(slots):
        possible = possible_options(
            [(key, len(classes[key])) for key in keys], [(s.low, s.high) for s in attempt]
        )
        if possible is not None:
            slots = attempt
            break
    assert possible is not None, "with every bound lifted, every join fits somewhere"
    closed = _closed(keys, slots)
    sole: dict[int, list[Join]] = {}  # joins that fill one and the same slot in every assignment
    for key, found_possible in zip(keys, possible, strict=True):
        if len(found_possible) == 1:
            sole.setdefault(next(iter(found_possible)), []).extend(classes[key])
    for position, key in enumerate(keys):
        found_possible = possible[position]
        possible_slots = [slots[i] for i in sorted(found_possible)]
        told = told_apart(possible_slots)
        for join in classes[key]:
            if join.record is not None:
                continue
            if not told and not closed[position] and now < join.arrival + wait:
                continue  # `decide` would wait too: skip its work (most rounds leave newer joins waiting)
            facts = join.facts if join.facts.guild_name else attrs.evolve(join.facts, guild_name=guild_name)
            join.record = decide(
                facts,
                possible_slots,
                final=closed[position] or now >= join.arrival + wait,
                vanity_code=vanity_code,
                uses=_uses(join, found_possible, slots, sole),
                now=now_dt,
                young_account_days=config.young_account_days,
            )


def _relaxations(slots: list[UseSlot]) -> Iterator[list[UseSlot]]:
    """The slots as they are; then without the max_uses assumption; then with no lower bound (the counts
    contradict what the core saw: a join it never heard of, so no count can be trusted); then with no bound
    at all (even the log's own records do not fit: never fail, only credit nobody from such counts).

    Lazily: the first attempt almost always fits, and building the others costs more than solving it."""
    yield slots
    yield [s.relaxed() if s.kind is SlotKind.MAX else s for s in slots]
    yield [s.relaxed() if s.low > 0 else s for s in slots]
    yield [attrs.evolve(s.relaxed(), high=None) for s in slots]


def _closed(keys: list[tuple[int, ...]], slots: list[UseSlot]) -> list[bool]:
    """For each class: can no later fetch change what its joins could have used? True when nothing linked
    to it through a bounded slot might still have its use counted by a fetch not compared yet (or by a
    final use count still awaited)."""
    parent = list(range(len(keys)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    owner: dict[int, int] = {}
    for position, key in enumerate(keys):
        for index in key:
            if slots[index].low == 0 and slots[index].high is None:
                continue  # an unbounded slot ties nobody to anybody
            if index in owner:
                parent[root(position)] = root(owner[index])
            else:
                owner[index] = position
    # A slot still awaiting its final use count (from the audit log) may yet become exact: like a fetch
    # not compared yet, it keeps what is linked to it open.
    future = {i for i, s in enumerate(slots) if s.kind is SlotKind.FUTURE or s.awaiting_until is not None}
    open_roots = {root(position) for position, key in enumerate(keys) if future.intersection(key)}
    return [root(position) not in open_roots for position in range(len(keys))]


def _uses(
    join: Join, found: set[int], slots: list[UseSlot], sole: dict[int, list[Join]]
) -> tuple[int | None, int | None]:
    """uses_before and uses_after of the invite a join used, as precise as the counts allow."""
    if len(found) == 1:
        index = next(iter(found))
        slot, members = slots[index], sole.get(index, [])
        if slot.uses_before is not None and slot.low == slot.high == len(members):
            ordered = sorted(
                members, key=lambda j: (j.joined_at if j.joined_at is not None else j.arrival, j.seq)
            )
            rank = ordered.index(join)
            return slot.uses_before + rank, slot.uses_before + rank + 1
    befores = [b for b in (slots[i].uses_before for i in found) if b is not None]
    afters = [a for a in (slots[i].uses_after for i in found) if a is not None]
    return (min(befores) if befores else None), (max(afters) if afters else None)
