"""The quick decision round (`quick.decide_single_use`) against the general path (`build_slots` + `solve`).

Random rounds near the common shape (one code one use up, one join that can have made it, later joins
waiting) and every way of leaving it: more uses, two codes, codes appearing and vanishing, the vanity URL,
announced and deleted invites, blind time, bots, invites not yet created or expired at the join, decided,
restored and offline joins, overdue joins. Whenever the quick path decides, every join's record must be the
general path's; when it declines, it must have changed nothing.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import attrs
import pytest

from service.attribution.config import AttributionConfig
from service.attribution.diff import Observation, SeenCreate, TimingBounds, build_slots
from service.attribution.problem import Join, Origin, solve
from service.attribution.quick import decide_single_use
from service.attribution.verdict import JoinFacts
from service.records import AttributionKind, InviteState, JoinRecorded

LATENCY = 0.25
CONFIG = AttributionConfig(gateway_latency=timedelta(seconds=LATENCY))
EPOCH = 1_800_000_000.0


def at(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def random_invites(rng: random.Random) -> dict[str, InviteState]:
    invites = {}
    for code in rng.sample("ABCD", rng.randint(1, 4)):
        created = at(EPOCH + rng.uniform(-5, 3)) if rng.random() < 0.15 else None
        expires = at(EPOCH + rng.uniform(0, 6)) if rng.random() < 0.15 else None
        invites[code] = InviteState(
            code=code,
            uses=rng.randint(0, 5),
            max_uses=rng.choice([0, 0, 0, 3, 7]),
            inviter_id=f"staff-{code}",
            inviter_name=f"Staff {code}",
            expires_at=expires,
            created_at=created,
        )
    return invites


def next_counts(rng: random.Random, invites: dict[str, InviteState]) -> dict[str, InviteState]:
    after = dict(invites)
    code = rng.choice(sorted(after))
    after[code] = attrs.evolve(after[code], uses=after[code].uses + 1)  # the common case
    roll = rng.random()
    if roll < 0.08:
        after[code] = attrs.evolve(after[code], uses=after[code].uses + 1)
    elif roll < 0.16:
        other = rng.choice(sorted(after))
        after[other] = attrs.evolve(after[other], uses=after[other].uses + rng.choice([-1, 1]))
    elif roll < 0.22:
        del after[rng.choice(sorted(after))]
    elif roll < 0.28:
        after["N"] = InviteState(code="N", uses=rng.randint(0, 2), inviter_id="staff-N")
    elif roll < 0.32:
        after[code] = attrs.evolve(after[code], uses=invites[code].uses)  # nothing moved after all
    return after


def random_join(rng: random.Random, seq: int, t0: float, t1: float) -> Join:
    # Mostly the common shape: the first join between the two fetches, the others after the second one.
    if rng.random() < 0.2:
        arrival = rng.uniform(t0 - 0.5, t1 + 0.6)
    else:
        arrival = rng.uniform(t0, t1) if seq == 1 else rng.uniform(t1, t1 + 0.6)
    joined = arrival - rng.uniform(0, LATENCY) if rng.random() < 0.9 else None
    origin = rng.choices([Origin.LIVE, Origin.OFFLINE, Origin.RESTORED], [0.9, 0.05, 0.05])[0]
    facts = JoinFacts(
        "g1",
        rng.choice(["", "Guild"]),
        f"{seq * 7919 << 22}",
        f"user{seq}",
        f"User {seq}",
        at(joined if joined is not None else arrival),
        rng.random() < 0.08,
        rng.random() < 0.2,
        0,
        origin is Origin.OFFLINE,
    )
    if joined is not None and rng.random() < 0.7:  # a learned clock narrows the window
        lo, hi = joined - 0.002, joined + 0.001
    else:
        lo, hi = arrival - LATENCY, arrival
    record = None
    if rng.random() < 0.05:
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
    now: float
    wait: float
    vanity_code: str | None

    def fresh_joins(self) -> list[Join]:
        return [attrs.evolve(j) for j in self.joins]


def random_round(rng: random.Random) -> Round:
    t0 = EPOCH + rng.uniform(0, 2)
    before = random_invites(rng)
    after = next_counts(rng, before)
    t1 = t0 + rng.uniform(0.01, 1.5)
    vanity = "vv" if rng.random() < 0.15 else None
    baseline = Observation(before, vanity, 4 if vanity else None, t0, t0 + 0.003)
    vanity_after = rng.choice([4, 4, 5, None]) if vanity else None
    fetch = Observation(after, vanity, vanity_after, t1, t1 + rng.uniform(0.001, 0.05))
    creates: dict[str, SeenCreate] = {}
    if rng.random() < 0.05:
        creates["Z"] = SeenCreate(InviteState(code="Z", uses=0), t0 + 0.1)
    deletes = {rng.choice(sorted(before)): t1} if rng.random() < 0.05 else {}
    blind = [(t0 - 1, t0 + 0.5)] if rng.random() < 0.05 else []
    joins = [random_join(rng, seq, t0, t1) for seq in range(1, rng.choice([1, 1, 2, 2, 3, 4]) + 1)]
    now = fetch.answered + LATENCY + rng.uniform(0.001, 0.5)
    wait = rng.choice([60.0, 60.0, 60.0, 0.3])
    return Round(baseline, [fetch], creates, deletes, blind, joins, now, wait, vanity)


def general_records(r: Round) -> list[JoinRecorded | None]:
    joins = r.fresh_joins()
    slots = build_slots(
        r.baseline, r.fetches, r.creates, r.deletes, r.blind, TimingBounds(LATENCY, -0.01, 0.01)
    )
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


@pytest.mark.parametrize("seed", range(20))
def test_the_quick_round_records_exactly_what_the_general_path_records(seed: int) -> None:
    rng = random.Random(seed)
    taken = declined = 0
    for _ in range(300):
        r = random_round(rng)
        joins = r.fresh_joins()
        before = [j.record for j in joins]
        quick = decide_single_use(
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
        if quick:
            taken += 1
            assert [j.record for j in joins] == general_records(r), r
        else:
            declined += 1
            assert [j.record for j in joins] == before  # declining changes nothing
    # Both sides must be exercised, or the comparison proves little.
    assert taken >= 40 and declined >= 40, (taken, declined)
