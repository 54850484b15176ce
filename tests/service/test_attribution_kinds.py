"""Every attribution kind, each from a scripted guild: what Discord did, and the record the core logs."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest

from service.records import AttributionKind as Kind
from service.records import InviteState
from tests.service.scripted_guild import VANITY, ScriptedGuild


def invite(code: str, uses: int = 0, *, staff: str = "", max_uses: int = 0) -> InviteState:
    staff = staff or f"9{code.encode().hex()}"
    return InviteState(
        code=code, uses=uses, max_uses=max_uses, inviter_id=staff, inviter_name=f"Staff {code}"
    )


def staff_of(code: str) -> str:
    return invite(code).inviter_id or ""


def exact() -> ScriptedGuild:
    g = ScriptedGuild((invite("A", 3), invite("B", 1)))
    g.run(5)
    g.join("u1", "A")
    return g


def new_invite_announced() -> ScriptedGuild:
    g = ScriptedGuild((invite("A", 3),))
    g.run(5)
    g.create(invite("N"))
    g.run(2)
    g.join("u1", "N")
    return g


def new_invite_unannounced() -> ScriptedGuild:
    g = ScriptedGuild((invite("A", 3),))  # no INVITE_CREATE (the bot lacks Manage Channels)
    g.run(5)
    g.create(invite("N"), event=None)
    g.join("u1", "N")
    return g


def vanity() -> ScriptedGuild:
    g = ScriptedGuild((invite("A", 3),), vanity_uses=10)
    g.run(5)
    g.join("u1", VANITY)
    return g


def max_uses() -> ScriptedGuild:
    g = ScriptedGuild((invite("A", 3), invite("M", 4, max_uses=5)))
    g.run(5)
    g.join("u1", "M")  # its fifth and last use: Discord deletes it
    return g


def max_uses_single_use_invite_created_and_used_between_fetches() -> ScriptedGuild:
    g = ScriptedGuild((invite("A", 3),))
    g.run(5)
    g.create(invite("ONE", max_uses=1))
    g.run(3)
    g.join("u1", "ONE")
    return g


def ambiguous() -> ScriptedGuild:
    g = ScriptedGuild((invite("A", 3), invite("B", 1)))
    g.run(5)
    g.join("u1", "A", delay=0.3)
    g.join("u2", "B", delay=0.35)
    return g


def unknown() -> ScriptedGuild:
    g = ScriptedGuild((invite("A", 3),), vanity_uses=10)
    g.run(5)
    g.join("u1", None)  # server discovery: no count changes
    return g


def offline_reconciled() -> ScriptedGuild:
    g = ScriptedGuild((invite("A", 3), invite("B", 1)))
    g.run(5)
    g.stop()
    g.run(60)
    g.join("u1", "A")
    g.run(60)
    g.start()
    return g


def offline_unknown() -> ScriptedGuild:
    g = ScriptedGuild((invite("A", 3), invite("B", 1)))
    g.run(5)
    g.stop()
    g.join("u1", "A")
    g.run(30)
    g.join("u2", "B")
    g.run(30)
    g.start()
    return g


CASES: list[tuple[Callable[[], ScriptedGuild], str, dict[str, object]]] = [
    (exact, "u1", {"kind": Kind.EXACT, "invite_code": "A", "staff_id": staff_of("A"), "uses": (3, 4)}),
    (new_invite_announced, "u1", {"kind": Kind.NEW_INVITE, "invite_code": "N", "staff_id": staff_of("N")}),
    (new_invite_unannounced, "u1", {"kind": Kind.NEW_INVITE, "invite_code": "N", "uses": (0, 1)}),
    (vanity, "u1", {"kind": Kind.VANITY, "invite_code": VANITY, "staff_id": None, "uses": (10, 11)}),
    (max_uses, "u1", {"kind": Kind.MAX_USES, "invite_code": "M", "staff_id": staff_of("M"), "uses": (4, 5)}),
    (
        max_uses_single_use_invite_created_and_used_between_fetches,
        "u1",
        {"kind": Kind.MAX_USES, "invite_code": "ONE", "staff_id": staff_of("ONE"), "uses": (0, 1)},
    ),
    (
        ambiguous,
        "u1",
        {"kind": Kind.AMBIGUOUS, "invite_code": None, "staff_id": None, "candidates": ("A", "B")},
    ),
    (ambiguous, "u2", {"kind": Kind.AMBIGUOUS, "staff_id": None, "candidates": ("A", "B")}),
    (unknown, "u1", {"kind": Kind.UNKNOWN, "invite_code": None, "staff_id": None, "candidates": ()}),
    (
        offline_reconciled,
        "u1",
        {"kind": Kind.OFFLINE_RECONCILED, "invite_code": "A", "staff_id": staff_of("A")},
    ),
    (offline_unknown, "u1", {"kind": Kind.OFFLINE_UNKNOWN, "staff_id": None, "candidates": ("A", "B")}),
    (offline_unknown, "u2", {"kind": Kind.OFFLINE_UNKNOWN, "staff_id": None, "candidates": ("A", "B")}),
]


@pytest.mark.parametrize(("script", "user", "expected"), CASES, ids=lambda c: getattr(c, "__name__", None))
def test_each_kind_is_recorded_as_the_counts_say(
    script: Callable[[], ScriptedGuild], user: str, expected: dict[str, object]
) -> None:
    g = script()
    g.run()
    record = g.record(user)
    for field, value in expected.items():
        if field == "uses":
            assert (record.uses_before, record.uses_after) == value
        else:
            assert getattr(record, field) == value, field


def test_a_join_record_carries_every_field_of_the_brief() -> None:
    g = exact()
    g.run()
    record = g.record("u1")
    assert record.timestamp == g.at(5.0) and record.timestamp.utcoffset() == timedelta(0)
    assert (record.user_id, record.username, record.display_name) == ("u1", "nameu1", "Name u1")
    assert (record.invite_code, record.staff_id, record.staff_username) == ("A", staff_of("A"), "Staff A")
    assert (record.uses_before, record.uses_after) == (3, 4)
    assert (record.guild_id, record.guild_name) == ("900000000000000001", "PipVault")
    assert record.decided_at is not None and record.decided_at > record.timestamp


def test_a_burst_on_one_invite_credits_every_join_with_its_own_place_in_the_count() -> None:
    g = ScriptedGuild((invite("A", 3), invite("B", 1)))
    g.run(5)
    for n in range(4):
        g.join(f"u{n}", "A", delay=0.3 + n * 0.01)
        g.run(0.05)
    g.run()
    records = [g.record(f"u{n}") for n in range(4)]
    assert {r.kind for r in records} == {Kind.EXACT}
    assert {r.staff_id for r in records} == {staff_of("A")}
    assert sorted((r.uses_before, r.uses_after) for r in records) == [(3, 4), (4, 5), (5, 6), (6, 7)]


@pytest.mark.parametrize("spread", [("A", "B"), ("A", "A", "B"), ("A", VANITY), ("A", None)])
def test_a_burst_spread_over_sources_is_ambiguous_for_everyone_in_it(spread: tuple[str | None, ...]) -> None:
    g = ScriptedGuild((invite("A", 3), invite("B", 1)), vanity_uses=7)
    g.run(5)
    for n, via in enumerate(spread):
        g.join(f"u{n}", via, delay=0.3)
    g.run()
    for n in range(len(spread)):
        record = g.record(f"u{n}")
        assert record.kind is Kind.AMBIGUOUS and record.staff_id is None
        expected = {"A", "B", VANITY} & {v for v in spread if v}
        assert set(record.candidates) == expected


def test_joins_queued_behind_a_fetch_are_told_apart_when_the_fetches_split_them() -> None:
    # u1's event starts a fetch; u2 joins after that fetch was served, so the next fetch alone counts it.
    g = ScriptedGuild((invite("A", 3), invite("B", 1)), fetch_delay=0.4)
    g.run(5)
    g.join("u1", "A", delay=0.1)
    g.run(1.0)
    g.join("u2", "B", delay=0.1)
    g.run()
    assert (g.record("u1").kind, g.record("u1").invite_code) == (Kind.EXACT, "A")
    assert (g.record("u2").kind, g.record("u2").invite_code) == (Kind.EXACT, "B")
