"""`convert.encode` of a JoinRecorded (the hand-written `join_payload`) gives the generic path's bytes
exactly, or the same error, for any value the record type allows and for odd ones it does not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st

from service import convert
from service.join_payload import join_payload
from service.records import AttributionKind, JoinFlag, JoinRecorded

# Text as names arrive from Discord, and the characters JSON escapes; plus what only the bytes patching in
# join_payload could trip on: a value ending in Z before a quote, the last times' key inside a name.
tricky = st.sampled_from(['Z"', "Z", '\\"Z', ',"account_created_at":"2020Z"', '"', "\\", "\x7f", "\u2028"])
texts = st.text(st.characters(exclude_categories=("Cs",)), max_size=12) | tricky
ids = st.from_regex(r"[0-9]{17,20}", fullmatch=True) | texts
zones = st.sampled_from(
    [
        UTC,
        timezone(timedelta(0)),
        timezone(timedelta(hours=5, minutes=45)),
        timezone(-timedelta(hours=12)),
        ZoneInfo("UTC"),
        ZoneInfo("America/St_Johns"),
        ZoneInfo("Asia/Kathmandu"),
    ]
)
aware = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=zones)
naive = st.datetimes()
times = aware | aware | naive
optional_ints = st.none() | st.integers(0, 10_000) | st.integers()

joins = st.builds(
    JoinRecorded,
    timestamp=times,
    guild_id=ids,
    guild_name=texts,
    user_id=ids,
    username=texts,
    display_name=texts,
    kind=st.sampled_from(AttributionKind),
    invite_code=st.none() | texts,
    staff_id=st.none() | ids,
    staff_username=st.none() | texts,
    uses_before=optional_ints,
    uses_after=optional_ints,
    candidates=st.lists(texts, max_size=4).map(tuple),
    flags=st.lists(st.sampled_from(JoinFlag), unique=True, max_size=5).map(tuple),
    account_created_at=st.none() | times,
    decided_at=st.none() | times,
)


class Name(str):
    pass


# Values outside the annotations (attrs does not check them): join_payload must step aside for each.
odd_values = st.sampled_from(
    [1.5, float("nan"), True, Name("x"), ["a"], ("a",), "\ud800", 2**70, b"x", AttributionKind.EXACT]
)
odd_fields = st.sampled_from(
    ["guild_id", "username", "invite_code", "uses_before", "candidates", "flags", "kind", "decided_at"]
)


def outcome(func: Any, record: JoinRecorded) -> tuple[str, Any]:
    try:
        return "bytes", func(record)
    except Exception as error:
        return "raises", type(error)


def generic(record: JoinRecorded) -> bytes:
    return convert._generic_payload(record)


def fast(record: JoinRecorded) -> bytes:
    return convert.encode(record)[1]


@given(joins)
@settings(max_examples=2000, deadline=None)
def test_a_join_encodes_to_the_generic_paths_bytes_or_its_error(record: JoinRecorded):
    expected = outcome(generic, record)
    assert outcome(fast, record) == expected
    times = (record.timestamp, record.account_created_at, record.decided_at)
    if expected[0] == "bytes" and all(t is None or t.tzinfo is not None for t in times):
        assert join_payload(record) == expected[1]  # answered by the fast path itself, not handed back


@given(joins, odd_fields, odd_values)
@settings(max_examples=500, deadline=None)
def test_odd_values_go_the_generic_way(record: JoinRecorded, field: str, value: Any):
    record = attrs.evolve(record, **{field: value})
    assert outcome(fast, record) == outcome(generic, record)


def test_the_fast_path_does_answer_for_ordinary_joins_and_steps_aside_for_naive_times():
    at = datetime(2026, 3, 1, 12, 0, 0, 5, tzinfo=UTC)
    record = JoinRecorded(
        at, "1", "G", "2", "u", "U", AttributionKind.EXACT, "abc", "3", "s", 1, 2, ("x",),
        (JoinFlag.REJOIN,), at, at,
    )  # fmt: skip
    expected = (
        b'{"timestamp":"2026-03-01T12:00:00.000005+00:00","guild_id":"1","guild_name":"G","user_id":"2",'
        b'"username":"u","display_name":"U","kind":"exact","invite_code":"abc","staff_id":"3",'
        b'"staff_username":"s","uses_before":1,"uses_after":2,"candidates":["x"],"flags":["rejoin"],'
        b'"account_created_at":"2026-03-01T12:00:00.000005+00:00","decided_at":"2026-03-01T12:00:00.000005+00:00"}'
    )
    assert join_payload(record) == expected == convert._generic_payload(record)
    assert join_payload(attrs.evolve(record, decided_at=datetime(2026, 1, 1))) is None
