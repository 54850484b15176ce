"""The feasibility solver and the snapshot comparison, on hand-made cases."""

from __future__ import annotations

import itertools
import random

import pytest

from service.attribution.diff import (
    FinalUses,
    Observation,
    SeenCreate,
    SlotKind,
    TimingBounds,
    UseSlot,
    build_slots,
)
from service.attribution.solver import (
    LISTING_MAX,
    assignment_count,
    possible_by_flow,
    possible_by_listing,
    possible_options,
)
from service.records import InviteState

NONE = 0  # slot 0 is "no invite" in these cases: unbounded


def brute_force(
    classes: list[tuple[tuple[int, ...], int]], bounds: list[tuple[int, int | None]]
) -> list[set[int]] | None:
    members = [options for options, count in classes for _ in range(count)]
    owner = [index for index, (_, count) in enumerate(classes) for _ in range(count)]
    found: list[set[int]] = [set() for _ in classes]
    feasible = False
    for choice in itertools.product(*members):
        filled = [choice.count(slot) for slot in range(len(bounds))]
        if all(
            low <= n and (high is None or n <= high) for n, (low, high) in zip(filled, bounds, strict=True)
        ):
            feasible = True
            for who, slot in zip(owner, choice, strict=True):
                found[who].add(slot)
    return found if feasible else None


def test_one_join_and_one_rise_is_exact() -> None:
    assert possible_options([((0, 1), 1)], [(0, None), (1, 1)]) == [{1}]


def test_two_joins_two_rises_on_two_invites_are_ambiguous() -> None:
    assert possible_options([((0, 1, 2), 2)], [(0, None), (1, 1), (1, 1)]) == [{1, 2}]


def test_a_join_that_alone_can_fill_a_slot_pins_the_other() -> None:
    # j1 can reach A or B, j2 only A: j2 takes A, so j1 must be B.
    result = possible_options([((0, 1, 2), 1), ((0, 1), 1)], [(0, None), (1, 1), (1, 1)])
    assert result == [{2}, {1}]


def test_contradicting_counts_are_infeasible() -> None:
    assert possible_options([((0, 1), 1)], [(0, None), (2, 2)]) is None


@pytest.mark.parametrize("seed", range(150))
def test_solver_agrees_with_brute_force(seed: int) -> None:
    rng = random.Random(seed)
    n_slots = rng.randint(1, 4)
    bounds: list[tuple[int, int | None]] = [(0, None)]
    for _ in range(n_slots):
        low = rng.randint(0, 2)
        bounds.append((low, rng.choice([low, low + 1, None])))
    classes = []
    for _ in range(rng.randint(1, 3)):
        options = tuple(sorted({0, *rng.sample(range(1, n_slots + 1), rng.randint(0, n_slots))}))
        if rng.random() < 0.3:
            options = options[1:] or (0,)
        classes.append((options, rng.randint(1, 2)))
    expected = brute_force(classes, bounds)
    assert possible_options(classes, bounds) == expected
    assert possible_by_flow(classes, bounds) == expected  # the path larger problems take


@pytest.mark.parametrize("seed", range(40))
def test_listing_and_flow_agree_on_every_small_problem(seed: int) -> None:
    # `possible_options` lists the assignments of small problems and solves a flow for the rest: the two
    # must give the same answer (None included), or a decision would depend on the problem's size.
    rng = random.Random(seed)
    compared = 0
    while compared < 250:
        bounds: list[tuple[int, int | None]] = [(0, None)] if rng.random() < 0.8 else []
        for _ in range(rng.randint(1, 6)):
            low = rng.randint(0, 3)
            bounds.append((low, rng.choice([low, low + 1, low + 2, None])))
        classes = [
            (tuple(sorted(rng.sample(range(len(bounds)), rng.randint(0, len(bounds))))), rng.randint(1, 3))
            for _ in range(rng.randint(1, 4))
        ]
        if assignment_count(classes, 4 * LISTING_MAX) > 4 * LISTING_MAX:
            continue
        compared += 1
        assert possible_by_listing(classes, bounds) == possible_by_flow(classes, bounds), (classes, bounds)


@pytest.mark.parametrize("seed", range(20))
def test_possible_options_agrees_with_the_flow_on_the_whole_problem(seed: int) -> None:
    # Unbounded slots are merged into one before solving, and classes that reach only those are left out:
    # the answer must be the flow's on the problem as given, large or small.
    rng = random.Random(1000 + seed)
    for _ in range(200):
        bounds: list[tuple[int, int | None]] = []
        for _ in range(rng.randint(1, 7)):
            low = rng.randint(0, 3) if rng.random() < 0.6 else 0
            bounds.append((low, rng.choice([low, low + 1, low + 2, None])))
        classes = [
            (tuple(sorted(rng.sample(range(len(bounds)), rng.randint(0, len(bounds))))), rng.randint(1, 4))
            for _ in range(rng.randint(1, 5))
        ]
        assert possible_options(classes, bounds) == possible_by_flow(classes, bounds), (classes, bounds)


def test_assignment_count_counts_spreads_of_interchangeable_joins() -> None:
    assert assignment_count([((0, 1, 2), 2)], 100) == 6  # {00, 01, 02, 11, 12, 22}
    assert assignment_count([((0, 1), 1), ((0, 1, 2), 1)], 100) == 6
    assert assignment_count([((), 1)], 100) == 0
    assert assignment_count([((0, 1, 2, 3), 5)] * 3, 100) > 100  # stops counting past the cap


def invite(code: str, uses: int, **fields: object) -> InviteState:
    return InviteState(code=code, uses=uses, **fields)  # type: ignore[arg-type]


def obs(
    t: float, *invites: InviteState, vanity: int | None = None, vanity_code: str | None = None
) -> Observation:
    return Observation({i.code: i for i in invites}, vanity_code, vanity, t, t + 0.2)


BOUNDS = TimingBounds(latency=3.0, offset_low=-1.0, offset_high=1.0)


def kinds(slots: list[UseSlot]) -> dict[str, tuple[SlotKind, int, int | None]]:
    special = (SlotKind.NONE, SlotKind.PRE, SlotKind.FUTURE)
    return {s.label: (s.kind, s.low, s.high) for s in slots if s.kind not in special}


def test_diff_names_each_kind_of_change() -> None:
    before = obs(0, invite("A", 3), invite("M", 4, max_uses=5), invite("D", 1, max_uses=10), invite("U", 0))
    after = obs(10, invite("A", 5), invite("N", 1), invite("U", 0))
    slots = build_slots(before, [after], {}, {}, [], BOUNDS)
    assert kinds(slots) == {
        "A": (SlotKind.EXACT, 2, 2),
        "N": (SlotKind.NEW, 1, 1),
        "M": (SlotKind.MAX, 1, 1),
        "D": (SlotKind.VANISHED, 0, 9),
    }


def test_diff_counts_vanity_rises_and_treats_unknown_vanity_counts_as_open() -> None:
    fetches = [obs(10, vanity=7, vanity_code="pip"), obs(20, vanity=None, vanity_code="pip")]
    slots = build_slots(obs(0, vanity=5, vanity_code="pip"), fetches, {}, {}, [], BOUNDS)
    vanity = [(s.low, s.high) for s in slots if s.kind is SlotKind.VANITY]
    assert vanity == [(2, 2), (0, None)]


def test_diff_max_slot_follows_the_invite_delete_and_an_early_deletion_is_not_a_use() -> None:
    before, after = obs(0, invite("M", 0, max_uses=1)), obs(100, invite("A", 0))
    near = build_slots(before, [after], {}, {"M": 50.0}, [], BOUNDS)
    (slot,) = [s for s in near if s.label == "M"]
    assert (slot.kind, slot.start, slot.end) == (SlotKind.MAX, 47.0, 50.0)
    early = build_slots(before, [after], {}, {"M": -5.0}, [], BOUNDS)
    assert [s.kind for s in early if s.label == "M"] == [SlotKind.VANISHED]


def test_diff_an_expired_invite_one_use_short_is_only_a_candidate() -> None:
    from datetime import UTC, datetime

    expiry = datetime.fromtimestamp(5, UTC)
    slots = build_slots(obs(0, invite("X", 0, max_uses=1, expires_at=expiry)), [obs(10)], {}, {}, [], BOUNDS)
    assert kinds(slots) == {"X": (SlotKind.VANISHED, 0, 1)}


def test_diff_an_announced_invite_that_vanished_before_any_fetch_listed_it() -> None:
    created = SeenCreate(invite("ONE", 0, max_uses=1), arrived=3.0)
    slots = build_slots(obs(0), [obs(10)], {"ONE": created}, {}, [], BOUNDS)
    assert kinds(slots) == {"ONE": (SlotKind.MAX, 1, 1)}


def test_diff_blind_time_lifts_every_lower_bound_it_touches() -> None:
    slots = build_slots(obs(0, invite("A", 0)), [obs(10, invite("A", 2))], {}, {}, [(4.0, 6.0)], BOUNDS)
    assert kinds(slots) == {"A": (SlotKind.EXACT, 0, 2)}


def test_diff_a_final_use_count_makes_a_deleted_invite_exact_up_to_its_deletion() -> None:
    before = obs(0, invite("D", 1, max_uses=10), invite("E", 2), invite("F", 0))
    finals = {"D": FinalUses(4, arrived=9.0, deleted_at=7.5), "E": FinalUses(2, arrived=9.0)}
    slots = build_slots(before, [obs(10)], {}, {}, [], BOUNDS, finals)
    assert kinds(slots) == {"D": (SlotKind.EXACT, 3, 3), "F": (SlotKind.VANISHED, 0, None)}  # E: no use
    (d,) = [s for s in slots if s.label == "D"]
    assert (d.start, d.end, d.uses_before, d.uses_after) == (0.0, 8.5, 1, 4)  # 7.5 less the lowest offset


def test_diff_a_vanished_invite_awaits_its_final_count_for_final_wait_after_the_fetch() -> None:
    before, after = obs(0, invite("D", 1)), obs(10)  # answered at 10.2

    def awaiting(now: float) -> list[float | None]:
        slots = build_slots(before, [after], {}, {}, [], BOUNDS, now=now, final_wait=5.0)
        return [s.awaiting_until for s in slots if s.label == "D"]

    assert awaiting(14.0) == [15.2]
    assert awaiting(15.3) == [None]


def test_diff_a_final_count_stays_within_the_vanished_slot_it_replaces() -> None:
    # Its INVITE_DELETE arrived at 5.0, before the audit entry (9.0): no use after 5.0.
    finals = {"D": FinalUses(2, arrived=9.0)}
    slots = build_slots(obs(0, invite("D", 1)), [obs(10)], {}, {"D": 5.0}, [], BOUNDS, finals)
    (d,) = [s for s in slots if s.label == "D"]
    assert (d.kind, d.low, d.high, d.start, d.end) == (SlotKind.EXACT, 1, 1, 0.0, 5.0)
