from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service import convert
from service.records import (
    RECORD_TYPES,
    AttributionKind,
    InviteSnapshotTaken,
    InviteState,
    JoinFlag,
    JoinRecorded,
)

aware = st.datetimes(timezones=st.just(UTC))


@given(
    ts=aware,
    name=st.text(),
    code=st.none() | st.text(min_size=1, max_size=20),
    flags=st.lists(st.sampled_from(list(JoinFlag)), unique=True).map(tuple),
)
def test_join_record_round_trips_through_the_log_payload(ts, name, code, flags):
    record = JoinRecorded(
        timestamp=ts,
        guild_id="1",
        guild_name="PipVault",
        user_id="2",
        username=name,
        display_name=name,
        kind=AttributionKind.EXACT,
        invite_code=code,
        flags=flags,
    )
    type_code, payload = convert.encode(record)
    assert type_code == RECORD_TYPES[JoinRecorded]
    assert convert.decode(type_code, payload) == record


def test_snapshot_round_trips_with_nested_invites():
    now = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
    snap = InviteSnapshotTaken(
        timestamp=now,
        guild_id="1",
        guild_name="g",
        invites=(InviteState(code="abc", uses=3, max_uses=5, inviter_id="9", expires_at=now),),
        vanity_code="pip",
        vanity_uses=7,
    )
    assert convert.decode(*convert.encode(snap)) == snap


def test_times_are_written_in_utc_with_offset():
    plus_two = timezone(timedelta(hours=2))
    record = JoinRecorded(
        timestamp=datetime(2026, 1, 1, 14, 0, tzinfo=plus_two),
        guild_id="1",
        guild_name="g",
        user_id="2",
        username="u",
        display_name="u",
        kind=AttributionKind.UNKNOWN,
    )
    _, payload = convert.encode(record)
    assert b'"2026-01-01T12:00:00+00:00"' in payload


def test_a_naive_time_is_refused():
    record = JoinRecorded(
        timestamp=datetime(2026, 1, 1),
        guild_id="1",
        guild_name="g",
        user_id="2",
        username="u",
        display_name="u",
        kind=AttributionKind.UNKNOWN,
    )
    with pytest.raises(ValueError, match="UTC offset"):
        convert.encode(record)
