"""The most common decision round, decided without building the problem: one use on one code, one join.

In a busy guild most rounds compare one fetch with the baseline, find that one code's uses rose by one and
nothing else changed, and have one join that can have made that use; any later joins can only have used
invites no compared fetch counted yet. The general path (`diff.build_slots`, then `problem.solve`) then
always answers the same: that join is the only one that can fill the one bounded slot, so it filled it
(exact, uses before and after known), and every other join waits. `decide_single_use` gives that answer
directly, and declines (changing nothing) whenever anything else could matter: an announced, deleted or
vanished invite, a vanity change, blind time, a decided or restored join still in the problem, a second
join that could have made the use, or a join the general path would record now (overdue, or one that can
only have joined without an invite). `tests/service/test_attribution_quick.py` holds it to the general path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

import attrs

from service.attribution.config import AttributionConfig
from service.attribution.diff import Observation, SeenCreate, SlotKind, UseSlot
from service.attribution.problem import Join, Origin, usable
from service.attribution.verdict import decide
from service.records import InviteState


def decide_single_use(
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
    if baseline is None or len(fetches) != 1 or creates or deletes or blind:
        return False
    prev, cur = baseline, fetches[0]
    if cur.vanity_code is not None and not (
        prev.vanity_code == cur.vanity_code
        and prev.vanity_uses is not None
        and cur.vanity_uses == prev.vanity_uses
    ):
        return False  # the vanity URL's count moved or cannot be compared: a vanity slot
    if len(cur.invites) != len(prev.invites):
        return False
    risen: tuple[str, InviteState, int] | None = None
    for code, invite in cur.invites.items():
        before = prev.invites.get(code)
        if before is None:
            return False
        if invite.uses != before.uses:
            if risen is not None or invite.uses != before.uses + 1:
                return False
            risen = code, invite, before.uses
    if risen is None:
        return False
    code, invite, uses_before = risen
    # The slot `build_slots` makes of that rise: exactly one use between the two fetches.
    slot = UseSlot(code, SlotKind.EXACT, 1, 1, prev.requested, cur.answered, invite, uses_before, invite.uses)
    chosen: Join | None = None
    for join in joins:
        if join.record is not None or join.origin is not Origin.LIVE:
            return False
        if (
            slot.reachable_from(join.lo, join.hi)
            and not (join.facts.bot and not config.bots_use_invites)
            and (join.joined_at is None or usable(invite, join.joined_at))
        ):
            if chosen is not None:
                return False  # two joins could have made the use: the solver's business
            chosen = join
        elif not (join.hi > cur.requested and now < join.arrival + wait):
            return False  # it cannot wait for a later fetch (or may not): the general path records it now
    if chosen is None:
        return False
    facts = chosen.facts if chosen.facts.guild_name else attrs.evolve(chosen.facts, guild_name=guild_name)
    chosen.record = decide(
        facts,
        [slot],
        final=not chosen.hi > cur.requested or now >= chosen.arrival + wait,
        vanity_code=vanity_code,
        uses=(slot.uses_before, slot.uses_after),
        now=now_dt,
        young_account_days=config.young_account_days,
    )
    return True
