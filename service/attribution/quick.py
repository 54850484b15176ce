"""The most common decision round, decided without building the problem: single uses, one join each.

In a busy guild most rounds compare one or a few fetches, each with the one before, and find that between
two fetches at most one code's uses rose, by one, and nothing else changed; the joins that can have made
those uses are as many as the uses and can be paired with them in only one way; any other join can only
have used an invite no compared fetch counted yet. The general path (`diff.build_slots`, then
`problem.solve`) then always answers the same: each of those joins filled its use's slot (exact, uses
before and after known), and every other join waits. `decide_single_uses` gives that
answer directly, and declines (changing nothing) whenever anything else could matter: an announced,
deleted or vanished invite, a vanity change, blind time, a decided or restored join still in the problem,
more or fewer candidates than uses, several ways to pair them, or a join the general path would record now
(overdue, or one that can only have joined without an invite). Audit log final use counts and the
waits for them concern vanished invites only, so such a round has none.
`tests/service/test_attribution_quick.py` holds it to the general path.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from datetime import datetime

import attrs

from service.attribution.config import AttributionConfig
from service.attribution.diff import Observation, SeenCreate, SlotKind, UseSlot
from service.attribution.problem import Join, Origin, usable
from service.attribution.verdict import decide


def decide_single_uses(
    baseline: Observation | None,
    fetches: Sequence[Observation],
    creates: Mapping[str, SeenCreate],
    deletes: Mapping[str, float],
    blind: Sequence[tuple[float, float]],
    joins: Sequence[Join],
    *,
    now: float,
    now_dt: datetime,
    wait: float,
    vanity_code: str | None,
    guild_name: str,
    config: AttributionConfig,
) -> bool:
    """Decide the round as `build_slots` + `solve` would, if it has the common shape; False if it has not.

    The arguments are those the core passes to `build_slots` (the settled fetches) and `solve`."""
    if baseline is None or not fetches or creates or deletes or blind:
        return False
    uses = _single_uses(baseline, fetches)
    if not uses:
        return False
    last = fetches[-1]
    reaching: dict[int, set[int]] = {}  # join (position) -> the uses it can have made
    for position, join in enumerate(joins):
        if join.record is not None or join.origin is not Origin.LIVE:
            return False
        reached = {k for k, slot in enumerate(uses) if _can_fill(join, slot, config)}
        if reached:
            reaching[position] = reached
        elif not (join.hi > last.requested and now < join.arrival + wait):
            return False  # it cannot wait for a later fetch (or may not): the general path records it now
    matched = only_matching(reaching, len(uses))
    if matched is None:
        return False  # several joins may have made a use, or none: the solver's business
    for position, k in matched.items():
        join, slot = joins[position], uses[k]
        facts = join.facts if join.facts.guild_name else attrs.evolve(join.facts, guild_name=guild_name)
        join.record = decide(
            facts,
            [slot],
            final=not join.hi > last.requested or now >= join.arrival + wait,
            vanity_code=vanity_code,
            uses=(slot.uses_before, slot.uses_after),
            now=now_dt,
            young_account_days=config.young_account_days,
        )
    return True


def only_matching(reaching: dict[int, set[int]], uses: int) -> dict[int, int] | None:
    """Each use filled by exactly one join, when there is only one way to do it: join -> use, else None.

    Every use needs a join of its own, and only the joins in `reaching` can make one, so when they are as
    many as the uses, every one of them made exactly one: a use only one of them can have made is that
    join's, a join that can have made only one use made that one. Peeling such pairs off finds the one
    matching when it is the only one (a bipartite graph with a single perfect matching always has such a
    pair); stuck with none, there are several (or no) matchings and the solver must weigh them."""
    if len(reaching) != uses:
        return None
    pending = {position: set(reached) for position, reached in reaching.items()}
    matched: dict[int, int] = {}
    while pending:
        pair = next(((j, next(iter(r))) for j, r in pending.items() if len(r) == 1), None)
        if pair is None:
            for use in sorted(set().union(*pending.values())):
                makers = [j for j, r in pending.items() if use in r]
                if len(makers) == 1:
                    pair = makers[0], use
                    break
        if pair is None:
            return None
        position, use = pair
        matched[position] = use
        del pending[position]
        for reached in pending.values():
            reached.discard(use)
            if not reached:
                return None
    return matched


def _single_uses(baseline: Observation, fetches: Sequence[Observation]) -> list[UseSlot] | None:
    """The slots `build_slots` makes of the chain, if each step is at most one code up by one use and
    nothing else (the same codes, no vanity change); None otherwise."""
    uses: list[UseSlot] = []
    for prev, cur in itertools.pairwise([baseline, *fetches]):
        if cur.vanity_code is not None and not (
            prev.vanity_code == cur.vanity_code
            and prev.vanity_uses is not None
            and cur.vanity_uses == prev.vanity_uses
        ):
            return None  # the vanity URL's count moved or cannot be compared: a vanity slot
        if len(cur.invites) != len(prev.invites):
            return None
        risen: UseSlot | None = None
        for code, invite in cur.invites.items():
            before = prev.invites.get(code)
            if before is None:
                return None
            if invite.uses != before.uses:
                if risen is not None or invite.uses != before.uses + 1:
                    return None
                risen = UseSlot(
                    code, SlotKind.EXACT, 1, 1, prev.requested, cur.answered, invite, before.uses, invite.uses
                )
        if risen is not None:
            uses.append(risen)
    return uses


def _can_fill(join: Join, slot: UseSlot, config: AttributionConfig) -> bool:
    """`problem.options_of` for a live join and an exact slot."""
    return (
        slot.reachable_from(join.lo, join.hi)
        and not (join.facts.bot and not config.bots_use_invites)
        and (join.joined_at is None or slot.invite is None or usable(slot.invite, join.joined_at))
    )
