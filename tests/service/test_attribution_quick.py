"""The quick decision round (`quick.decide_single_uses`) against the general path (`build_slots` + `solve`).

Random rounds near the common shape (one to three fetches compared, each one code one use up, one join
that can have made each use, later joins waiting) and every way of leaving it: more uses, two codes, codes
appearing and vanishing, the vanity URL, announced and deleted invites, blind time, bots, invites not yet
created or expired at the join, decided, restored and offline joins, overdue joins, uses nobody made.
Whenever the quick path decides, every join's record must be the general path's; when it declines, it
must have changed nothing.
"""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta

import attrs
import pytest

from service.attribution.config import AttributionConfig
from service.attribution.diff import FinalUses, Observation, SeenCreate, TimingBounds, build_slots
from service.attribution.problem import Join, Origin, solve
from service.attribution.quick import decide_single_uses, only_matching
from service.attribution.verdict import JoinFacts
from service.records import AttributionKind, InviteState, JoinRecorded

LATENCY = 0.25
CONFIG = AttributionConfig(gateway_latency=timedelta(seconds=LATENCY))
EPOCH = 1_800_000_000.0


def at(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def odds(rng: random.Random, p: float, noise: float) -> bool:
    """True with probability p scaled by `noise` (0: the clean common shape, 1: every way out of it)."""
    return rng.random() < p * noise


def random_invites(rng: random.Random, noise: float) -> dict[str, InviteState]:
    invites = {}
    for code in rng.sample("ABCD", rng.randint(1, 4)):
        invites[code] = InviteState(
            code=code,
            uses=rng.randint(0, 5),
            max_uses=rng.choice([0, 0, 0, 3, 7]),
            inviter_id=f"staff-{code}",
            inviter_name=f"Staff {code}",
            expires_at=at(EPOCH + rng.uniform(0, 6)) if odds(rng, 0.15, noise) else None,
            created_at=at(EPOCH + rng.uniform(-5, 3)) if odds(rng, 0.15, noise) else None,
        )
    return invites


def next_counts(rng: random.Random, invites: dict[str, InviteState], noise: float) -> dict[str, InviteState]:
    after = dict(invites)
    if not after:
        return after
    code = rng.choice(sorted(after))
    after[code] = attrs.evolve(after[code], uses=after[code].uses + 1)  # the common case
    if odds(rng, 0.08, noise):
        after[code] = attrs.evolve(after[code], uses=after[code].uses + 1)
    if odds(rng, 0.08, noise):
        other = rng.choice(sorted(after))
        after[other] = attrs.evolve(after[other], uses=after[other].uses + rng.choice([-1, 1]))
    if odds(rng, 0.06, noise):
        del after[rng.choice(sorted(after))]
    if odds(rng, 0.06, noise):
        after["N"] = InviteState(code="N", uses=rng.randint(0, 2), inviter_id="staff-N")
    if odds(rng, 0.06, noise) and code in after:
        after[code] = attrs.evolve(after[code], uses=invites[code].uses)  # nothing moved after all
    return after


def random_join(
    rng: random.Random,
    seq: int,
    between: tuple[float, float],
    span: tuple[float, float],
    noise: float,
    narrow: float,
) -> Join:
    # Mostly the common shape (`between` two fetches, or after the last one); now and then anywhere.
    arrival = rng.uniform(*span) if odds(rng, 0.2, noise) else rng.uniform(*between)
    joined = None if odds(rng, 0.1, noise) else arrival - rng.uniform(0, LATENCY)
    origin = Origin.LIVE
    if odds(rng, 0.1, noise):
        origin = rng.choice([Origin.OFFLINE, Origin.RESTORED])
    facts = JoinFacts(
        "g1",
        rng.choice(["", "Guild"]),
        f"{seq * 7919 << 22}",
        f"user{seq}",
        f"User {seq}",
        at(joined if joined is not None else arrival),
        odds(rng, 0.08, noise),
        rng.random() < 0.2,
        0,
        origin is Origin.OFFLINE,
    )
    if joined is not None and rng.random() < narrow:  # a learned clock narrows the window
        lo, hi = joined - 0.002, joined + 0.001
    else:
        lo, hi = arrival - LATENCY, arrival
    record = None
    if odds(rng, 0.05, noise):
        record = JoinRecorded(
            timestamp=facts.timestamp,
            guild_id="g1",
            guild_name="Guild",
            user_id=facts.user_id,
            username=facts.username,
            display_name=facts.display_name,
            kind=AttributionKind.UNKNOWN,
        )
    label = rng.choice([None, "A", "\x00none"]) if origin is Origin.RESTORED else None
    return Join(seq, origin, facts, joined, arrival, lo, hi, fixed_label=label, record=record)


@attrs.frozen
class Round:
    baseline: Observation
    fetches: list[Observation]
    creates: dict[str, SeenCreate]
    deletes: dict[str, float]
    blind: list[tuple[float, float]]
    joins: list[Join]
    finals: dict[str, FinalUses]  # audit log counts: they matter only for invites that vanished
    now: float
    wait: float
    vanity_code: str | None

    def fresh_joins(self) -> list[Join]:
        return [attrs.evolve(j) for j in self.joins]


def random_round(rng: random.Random, noise: float = 1.0, narrow: float = 0.7) -> Round:
    vanity = "vv" if odds(rng, 0.15, noise) else None
    t = EPOCH + rng.uniform(0, 2)
    counts = random_invites(rng, noise)
    baseline = Observation(counts, vanity, 4 if vanity else None, t, t + 0.003)
    times = [t]
    fetches = []
    for _ in range(rng.choice([1, 1, 1, 2, 2, 3])):
        counts = next_counts(rng, counts, noise)
        t += rng.uniform(0.01, 1.5)
        vanity_uses = (rng.choice([5, None]) if odds(rng, 0.4, noise) else 4) if vanity else None
        fetches.append(Observation(counts, vanity, vanity_uses, t, t + rng.uniform(0.001, 0.05)))
        times.append(t)
    creates: dict[str, SeenCreate] = {}
    if odds(rng, 0.05, noise):
        creates["Z"] = SeenCreate(InviteState(code="Z", uses=0), times[0] + 0.1)
    deletes = {rng.choice(sorted(baseline.invites)): times[-1]} if odds(rng, 0.05, noise) else {}
    blind = [(times[0] - 1, times[0] + 0.5)] if odds(rng, 0.05, noise) else []
    span = (times[0] - 0.5, times[-1] + 0.6)
    joins = [
        random_join(rng, k, (times[k - 1], times[k]), span, noise, narrow)
        for k in range(1, len(times))
        if not odds(rng, 0.1, noise)
    ]
    for _ in range(rng.choice([0, 0, 1, 1, 2, 3])):  # later joins, waiting for the next fetch
        joins.append(random_join(rng, len(joins) + 1, (times[-1], times[-1] + 0.6), span, noise, narrow))
    finals = {}
    if odds(rng, 0.1, noise):
        code = rng.choice(sorted(baseline.invites))
        finals[code] = FinalUses(baseline.invites[code].uses + rng.randint(0, 1), times[-1] + 0.01)
    now = fetches[-1].answered + LATENCY + rng.uniform(0.001, 0.5)
    wait = 0.3 if odds(rng, 0.25, noise) else 60.0
    return Round(baseline, fetches, creates, deletes, blind, joins, finals, now, wait, vanity)


def general_records(r: Round) -> list[JoinRecorded | None]:
    joins = r.fresh_joins()
    bounds = TimingBounds(LATENCY, -0.01, 0.01)
    slots = build_slots(
        r.baseline, r.fetches, r.creates, r.deletes, r.blind, bounds, r.finals, now=r.now, final_wait=1.0
    )
    # The core sets nothing awaiting after a quick round: the general path must agree.
    assert all(slot.awaiting_until is None for slot in slots)
    solve(
        joins,
        slots,
        now=r.now,
        now_dt=at(r.now),
        wait=r.wait,
        vanity_code=r.vanity_code,
        guild_name="Guild",
        config=CONFIG,
    )
    return [j.record for j in joins]


def compare(r: Round) -> int:
    """How many joins the quick path decided (0: it declined); fails if it disagrees with the general path."""
    joins = r.fresh_joins()
    before = [j.record for j in joins]
    quick = decide_single_uses(
        r.baseline,
        r.fetches,
        r.creates,
        r.deletes,
        r.blind,
        joins,
        now=r.now,
        now_dt=at(r.now),
        wait=r.wait,
        vanity_code=r.vanity_code,
        guild_name="Guild",
        config=CONFIG,
    )
    if not quick:
        assert [j.record for j in joins] == before  # declining changes nothing
        return 0
    assert [j.record for j in joins] == general_records(r), r
    return sum(1 for j, was in zip(joins, before, strict=True) if j.record is not was)


@pytest.mark.parametrize("seed", range(20))
def test_the_quick_round_records_exactly_what_the_general_path_records(seed: int) -> None:
    rng = random.Random(seed)
    decided = [compare(random_round(rng)) for _ in range(300)]
    # Both sides must be exercised, or the comparison proves little.
    assert sum(1 for n in decided if n) >= 20 and decided.count(0) >= 20


@pytest.mark.parametrize("seed", range(10))
def test_the_quick_round_agrees_on_chains_of_fetches_too(seed: int) -> None:
    rng = random.Random(100 + seed)
    decided = [compare(random_round(rng, noise=0.15)) for _ in range(300)]
    assert sum(1 for n in decided if n >= 2) >= 15  # rounds deciding two or three uses of a chain


@pytest.mark.parametrize("seed", range(10))
def test_the_quick_round_agrees_when_wide_windows_make_joins_compete_for_uses(seed: int) -> None:
    # Windows as wide as the latency: a join often can have made the use before its own, so the pairing
    # of joins and uses is forced only sometimes.
    rng = random.Random(200 + seed)
    decided = [compare(random_round(rng, noise=0.15, narrow=0.0)) for _ in range(300)]
    assert sum(1 for n in decided if n >= 2) >= 5 and decided.count(0) >= 50


def test_only_matching_pairs_joins_and_uses_only_when_one_way_exists() -> None:
    assert only_matching({0: {0}}, 1) == {0: 0}
    assert only_matching({0: {0, 1}, 1: {1}}, 2) == {0: 0, 1: 1}  # 1 must take use 1, so 0 takes use 0
    assert only_matching({0: {0, 1}, 1: {0, 1}}, 2) is None  # two ways
    assert only_matching({0: {0}, 1: {0}}, 2) is None  # use 1 made by nobody here
    assert only_matching({0: {0}, 1: {0}}, 1) is None  # more candidates than uses
    assert only_matching({}, 0) == {}


@pytest.mark.parametrize("seed", range(10))
def test_only_matching_agrees_with_counting_every_matching(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(300):
        uses = rng.randint(1, 4)
        joins = rng.randint(max(0, uses - 1), uses + 1)
        reaching = {j: set(rng.sample(range(uses), rng.randint(1, uses))) for j in range(joins)}
        matchings = [
            dict(zip(reaching, choice, strict=True))
            for choice in itertools.permutations(range(uses), len(reaching))
            if len(reaching) == uses and all(u in reaching[j] for j, u in zip(reaching, choice, strict=True))
        ]
        expected = matchings[0] if len(matchings) == 1 else None
        assert only_matching(reaching, uses) == expected, (reaching, uses)
