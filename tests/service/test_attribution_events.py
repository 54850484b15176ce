"""Events travel through the one converter like records do."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from service import convert
from service.events import (
    EVENT_CLASSES,
    ClockTick,
    FetchFailed,
    FetchRateLimited,
    GatewayDisconnected,
    GuildAvailable,
    GuildRestored,
    InviteCreated,
    InviteDeleted,
    InviteFinalUses,
    InvitesFetched,
    MemberInfo,
    MemberJoined,
    MemberRemoved,
    RecordedMember,
)
from service.records import AttributionKind, InviteSnapshotTaken, InviteState, JoinFlag, JoinRecorded

AT = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
INVITE = InviteState(code="abc", uses=3, max_uses=5, inviter_id="9", inviter_name="Staff", expires_at=AT)
MEMBER = MemberInfo("2", "u", "U", joined_at=AT, bot=True, flags=1)
JOIN = JoinRecorded(
    timestamp=AT,
    guild_id="1",
    guild_name="g",
    user_id="2",
    username="u",
    display_name="U",
    kind=AttributionKind.AMBIGUOUS,
    candidates=("abc", "def"),
    flags=(JoinFlag.REJOIN,),
    decided_at=AT,
)

EXAMPLES = [
    GuildRestored(
        "1",
        "g",
        snapshot=InviteSnapshotTaken(
            timestamp=AT, guild_id="1", guild_name="g", invites=(INVITE,), vanity_uses=3
        ),
        last_seen=AT,
        recent_joins=(JOIN,),
        known_user_ids=("2", "3"),
        present=(RecordedMember("2", AT),),
    ),
    GuildAvailable(
        "1", "g", AT, vanity_code="pip", members=(MEMBER,), invites=(INVITE,), invites_requested_at=AT
    ),
    GuildAvailable("1", "g", AT),
    GatewayDisconnected(AT),
    InviteCreated("1", AT, invite=INVITE),
    InviteDeleted("1", AT, code="abc"),
    InviteFinalUses("1", AT, code="abc", uses=4, max_uses=5, inviter_id="9", deleted_at=AT),
    InviteFinalUses("1", AT, code="abc", uses=0),
    MemberJoined("1", AT, member=MEMBER, guild_name="g"),
    MemberRemoved("1", AT, user_id="2"),
    InvitesFetched("1", 4, AT, invites=(INVITE,), vanity_code="pip", vanity_uses=7),
    FetchRateLimited("1", 4, AT, retry_after=1.5),
    FetchFailed("1", 4, AT, reason="timeout"),
    ClockTick(AT),
]


def test_every_event_class_has_an_example() -> None:
    assert {type(e) for e in EXAMPLES} == set(EVENT_CLASSES)


@pytest.mark.parametrize("event", EXAMPLES, ids=lambda e: type(e).__name__)
def test_event_round_trips_through_the_converter(event: object) -> None:
    data = convert.unstructure(event)
    assert convert.structure(data, type(event)) == event


def test_event_times_travel_in_utc_with_offset() -> None:
    plus_two = timezone(timedelta(hours=2))
    data = convert.unstructure(ClockTick(datetime(2026, 1, 1, 14, 0, tzinfo=plus_two)))
    assert data == {"at": "2026-01-01T12:00:00+00:00"}


def test_a_naive_time_is_refused() -> None:
    with pytest.raises(ValueError):
        ClockTick(datetime(2026, 1, 1))


def test_an_invite_list_on_guild_available_needs_its_request_time() -> None:
    with pytest.raises(ValueError):
        GuildAvailable("1", "g", AT, invites=(INVITE,))
