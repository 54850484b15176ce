"""A join's row read straight from its payload text equals the live applier's row for the decoded record,
and any payload outside the encoder's plain shape is left to the generic path."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service import convert
from service.projection.apply import _join_row
from service.projection.join_rows import join_row
from service.records import AttributionKind, JoinFlag, JoinRecorded

texts = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
zones = st.sampled_from([UTC, timezone(timedelta(hours=2)), timezone(-timedelta(hours=5, minutes=30))])
times = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=zones)
ints = st.none() | st.integers(-(2**63), 2**63 - 1)
ids = st.from_regex(r"[1-9][0-9]{16,19}", fullmatch=True) | texts

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
    uses_before=ints,
    uses_after=ints,
    candidates=st.lists(texts, max_size=3).map(tuple),
    flags=st.lists(st.sampled_from(JoinFlag), max_size=3).map(tuple),
    account_created_at=st.none() | times,
    decided_at=st.none() | times,
)


def generic_row(lsn: int, payload: bytes) -> tuple:
    record = convert.decode(1, payload)
    assert isinstance(record, JoinRecorded)
    return _join_row(lsn, record)


@settings(max_examples=400, deadline=None)
@given(record=joins, lsn=st.integers(1, 2**40))
def test_the_fast_row_of_an_encoded_join_is_the_live_row(record, lsn):
    _code, payload = convert.encode(record)
    row = join_row(lsn, payload)
    expected = _join_row(lsn, record)
    # Everything the encoder writes (escapes included) is taken by the fast path.
    assert row == expected
    # the same Python types, so SQLite stores the same (the kind binds as its text either way)
    assert row is not None
    assert [type(v) for v in row] == [str if isinstance(v, str) else type(v) for v in expected]
    assert generic_row(lsn, payload) == expected


def plain_payload(**changes) -> dict:
    record = JoinRecorded(
        timestamp=datetime(2026, 3, 1, 12, 0, 0, 5, tzinfo=UTC),
        guild_id="811",
        guild_name="PipVault",
        user_id="1000",
        username="noah",
        display_name="Noah | Trader",
        kind=AttributionKind.EXACT,
        invite_code="abc",
        staff_id="900",
        staff_username="Staff#1",
        uses_before=0,
        uses_after=1,
        flags=(JoinFlag.YOUNG_ACCOUNT,),
        account_created_at=datetime(2020, 1, 1, tzinfo=UTC),
        decided_at=datetime(2026, 3, 1, 12, 0, 1, tzinfo=UTC),
    )
    data = convert.unstructure(record)
    data.update(changes)
    return data


def dumps(data: dict, **kw) -> bytes:
    options = {"ensure_ascii": False, "separators": (",", ":"), **kw}
    return json.dumps(data, **options).encode()


def test_the_plain_shape_is_taken():
    payload = dumps(plain_payload())
    assert join_row(7, payload) == generic_row(7, payload)


@pytest.mark.parametrize(
    "payload",
    [
        dumps(plain_payload(), separators=(", ", ": ")),  # whitespace
        dumps(plain_payload(username="é"), ensure_ascii=True),  # an escape
        dumps({"extra": 1, **plain_payload()}),  # another key order
        dumps(plain_payload(timestamp="2026-03-01T14:00:00+02:00")),  # another offset
        dumps(plain_payload(uses_before=1.0)),  # a float where an int is expected
        dumps(plain_payload(guild_id=811)),  # a number where a string is expected
        dumps(plain_payload(candidates=["a", 1])),
        dumps(plain_payload(flags=["rejoin", "bot"])),  # another (valid) flags text, checked once
        b"\xef\xbb\xbf" + dumps(plain_payload()),  # a byte order mark
        # what the converter accepts though the encoder never writes it: a string for an int, null for a
        # string (it becomes "None"), an encoded lone surrogate (json.loads lets it pass)
        dumps(plain_payload(uses_before="01")),
        dumps(plain_payload(guild_id=None)),
        dumps(plain_payload()).replace(b"noah", b"no\xed\xa0\x80ah"),
        dumps(plain_payload(username="x\ud800y"), ensure_ascii=True),  # an escaped lone surrogate
        dumps(plain_payload()).replace(b'"kind":"exact"', b'"kind":"exact","kind":"vanity"'),  # twice
        dumps(plain_payload(uses_after=10**30)),  # bigger than 64 bits
        dumps(plain_payload(flags=["rejoin", "rejoin"])),
        dumps(plain_payload()).decode().encode("utf-16"),  # json.loads detects UTF-16
    ],
)
def test_other_shapes_give_the_generic_row(payload):
    row = join_row(3, payload)
    assert row is None or row == generic_row(3, payload)
    assert generic_row(3, payload) is not None


@pytest.mark.parametrize(
    "payload",
    [
        dumps(plain_payload(kind="guessed")),
        dumps(plain_payload(flags=["lucky"])),
        dumps(plain_payload(timestamp="2026-03-01T12:00:00")),  # no offset
        dumps(plain_payload(timestamp="2026-02-30T12:00:00+00:00")),  # no such day
        dumps(plain_payload()).replace(b'"uses_before":0', b'"uses_before":01'),  # not JSON
        dumps(plain_payload(username="a\u0001b")).replace(b"\\u0001", b"\x01"),  # a raw control character
    ],
)
def test_payloads_the_converter_refuses_are_left_to_it(payload):
    assert join_row(3, payload) is None
    with pytest.raises(Exception):  # noqa: B017 (whatever the converter raises, the live applier would)
        generic_row(3, payload)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | texts,
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(texts, inner, max_size=2),
    max_leaves=4,
)
field_names = st.sampled_from([field.name for field in attrs.fields(JoinRecorded)])


def generic_outcome(lsn: int, payload: bytes) -> tuple | type[BaseException]:
    try:
        return generic_row(lsn, payload)
    except Exception as exc:  # any refusal: the fast path must refuse too
        return type(exc)


@settings(max_examples=400, deadline=None)
@given(
    record=joins,
    changes=st.dictionaries(field_names | texts, json_values, max_size=3),
    dropped=st.sets(field_names, max_size=2),
    ascii_only=st.booleans(),
    spaced=st.booleans(),
)
def test_a_fast_row_of_any_json_is_the_generic_row(record, changes, dropped, ascii_only, spaced):
    """Whatever the JSON (odd types, missing or unknown keys, escapes, whitespace), a fast row is only ever
    the generic row, and a payload the converter refuses never gets one."""
    data = {**convert.unstructure(record), **changes}
    for name in dropped:
        data.pop(name, None)
    payload = dumps(data, ensure_ascii=ascii_only, separators=(", ", ": ") if spaced else (",", ":"))
    row = join_row(5, payload)
    if row is not None:
        assert generic_outcome(5, payload) == row
