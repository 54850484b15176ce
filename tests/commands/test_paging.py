"""Pagination state: custom ids, expiry, capacity."""

from __future__ import annotations

from commands import paging


def test_custom_ids_round_trip_and_foreign_ones_are_ignored() -> None:
    assert paging.parse_custom_id(paging.custom_id("k3y", paging.NEXT)) == ("k3y", "next")
    for foreign in ("ilogs:k3y", "other:k3y:next", "ilogs:k3y:sideways", "ilogs:a:b:next"):
        assert paging.parse_custom_id(foreign) is None


def test_states_expire_unless_used_and_the_oldest_go_first() -> None:
    now = [0.0]
    store = paging.PageStore(ttl_s=10, capacity=3, clock=lambda: now[0])
    keys = [store.add(paging.LogQuery("g", "u", {}, ())) for _ in range(3)]
    assert len(set(keys)) == 3
    now[0] = 8
    assert store.get(keys[0]) is not None  # used: kept another 10 s
    now[0] = 12
    assert store.get(keys[1]) is None and store.get(keys[2]) is None
    assert store.get(keys[0]) is not None
    more = [store.add(paging.LogQuery("g", "u", {}, ())) for _ in range(3)]
    assert len(store) == 3 and store.get(keys[0]) is None and all(store.get(k) for k in more)
