"""The adapter's pure parts: Discord JSON to domain values, the ordered bounded stream, the backoff."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone

import anyio
import pytest

from service.discord_adapter import Backoff
from service.discord_adapter.parse import (
    PayloadError,
    invite_final_uses,
    invite_state,
    member_info,
    parse_time,
    user_id_of,
    vanity,
)
from service.discord_adapter.stream import OrderedStream


def test_member_info_takes_nick_then_global_name_then_username() -> None:
    user = {"id": "42", "username": "john_doe", "global_name": "John Doe", "bot": False, "avatar": None}
    data = {"user": user, "nick": None, "joined_at": "2025-10-31T14:30:45.123456+00:00", "flags": 1}
    info = member_info(data)
    assert (info.user_id, info.username, info.display_name, info.flags) == ("42", "john_doe", "John Doe", 1)
    assert info.joined_at == datetime(2025, 10, 31, 14, 30, 45, 123456, tzinfo=UTC)
    assert member_info({**data, "nick": "JD"}).display_name == "JD"
    assert member_info({"user": {"id": "7", "username": "bot", "bot": True}}).display_name == "bot"
    assert member_info({"user": {"id": "7", "username": "bot", "bot": True}}).bot
    with pytest.raises(PayloadError):
        member_info({"user": {"id": "not-a-snowflake", "username": "x"}})
    with pytest.raises(PayloadError):
        member_info({"nick": "no user"})
    assert user_id_of({"user": {"id": "9"}}) == user_id_of({"id": "9"}) == "9"


def test_an_invite_delete_audit_log_entry_gives_the_invites_final_use_count() -> None:
    # As Discord documents it: an audit log entry object plus guild_id; the invite's fields are old_values.
    entry_id = ((1_790_000_000_000 - 1_420_070_400_000) << 22) | 5  # made at 1,790,000,000 s
    data = {
        "guild_id": "900",
        "id": str(entry_id),
        "action_type": 42,
        "target_id": None,
        "user_id": "77",
        "changes": [
            {"key": "code", "old_value": "abc123XYZ"},
            {"key": "channel_id", "old_value": "31"},
            {"key": "inviter_id", "old_value": "42"},
            {"key": "uses", "old_value": 4},
            {"key": "max_uses", "old_value": 0},
            {"key": "max_age", "old_value": 0},
            {"key": "temporary", "old_value": False},
        ],
    }
    at = datetime(2026, 1, 1, tzinfo=UTC)
    final = invite_final_uses(data, at)
    assert (final.guild_id, final.at, final.code, final.uses) == ("900", at, "abc123XYZ", 4)
    assert (final.max_uses, final.inviter_id) == (0, "42")
    assert final.deleted_at == datetime.fromtimestamp(1_790_000_000, UTC)
    without_uses = {**data, "changes": [{"key": "code", "old_value": "abc123XYZ"}]}
    for unreadable in (without_uses, {**data, "action_type": 40}, {**data, "id": None}):
        with pytest.raises(PayloadError):
            invite_final_uses(unreadable, at)


def test_the_bots_intents_hold_the_audit_log_entries() -> None:
    from interactions import Intents

    # GUILD_AUDIT_LOG_ENTRY_CREATE needs GUILD_MODERATION, which interactions.py's DEFAULT holds.
    assert Intents.GUILD_MODERATION in Intents.DEFAULT | Intents.GUILD_MEMBERS
    assert Intents.GUILD_INVITES in Intents.DEFAULT


def test_times_are_aware_utc_datetimes_and_naive_ones_are_read_as_utc() -> None:
    assert parse_time("2025-01-02T03:04:05Z") == datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    plus_two = parse_time("2025-01-02T05:04:05+02:00")
    assert plus_two == datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC) and plus_two is not None
    assert plus_two.tzinfo is UTC
    assert parse_time("2025-01-02T03:04:05") == datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert parse_time(None) is None and parse_time("") is None
    aware = datetime(2025, 1, 1, tzinfo=timezone(timedelta(hours=-5)))
    assert parse_time(aware) == aware and type(parse_time(aware)) is datetime
    with pytest.raises(PayloadError):
        parse_time("yesterday")


def test_invite_state_reads_uses_inviter_channel_and_times() -> None:
    data = {
        "code": "abc123XYZ",
        "uses": 5,
        "max_uses": 10,
        "inviter": {"id": "987", "username": "TravisP"},
        "channel": {"id": "55"},
        "expires_at": "2025-11-01T00:00:00+00:00",
        "created_at": "2025-10-01T00:00:00+00:00",
    }
    invite = invite_state(data)
    assert (invite.code, invite.uses, invite.max_uses) == ("abc123XYZ", 5, 10)
    assert (invite.inviter_id, invite.inviter_name, invite.channel_id) == ("987", "TravisP", "55")
    assert invite.expires_at == datetime(2025, 11, 1, tzinfo=UTC)
    # INVITE_CREATE carries channel_id and no uses; Discord omits uses without Manage Guild: 0.
    bare = invite_state({"code": "x", "channel_id": "56", "max_uses": 0, "expires_at": None})
    assert (bare.uses, bare.inviter_id, bare.channel_id, bare.expires_at) == (0, None, "56", None)
    with pytest.raises(PayloadError):
        invite_state({"uses": 1})


def test_vanity_answer() -> None:
    assert vanity({"code": "pipvault", "uses": 3}) == ("pipvault", 3)
    assert vanity({"code": None, "uses": 0}) == (None, None)
    assert vanity(None) == (None, None)


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
@pytest.mark.anyio
async def test_a_full_stream_keeps_every_event_in_order(anyio_backend: str) -> None:
    stream: OrderedStream[int] = OrderedStream(buffer=3)
    received: list[int] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(stream.pump)
        for i in range(20):  # nobody reads yet: 3 fit, 17 wait in the overflow
            stream.put(i)
        assert stream.backlog == 20 and stream.overflowed == 17
        for _ in range(10):
            received.append(await stream.receive.receive())
        for i in range(20, 25):  # the overflow is not empty: these queue behind it, not into the buffer
            stream.put(i)
        while len(received) < 25:
            received.append(await stream.receive.receive())
        assert stream.backlog == 0
        stream.put(25)  # the overflow has drained: straight into the buffer again
        assert stream.overflowed == 22 and await stream.receive.receive() == 25
        tg.cancel_scope.cancel()
    assert received == list(range(25))
    stream.close()
    stream.put(26)  # after close: ignored, no error
    stream.receive.close()


def test_backoff_is_bounded_jittered_and_grows() -> None:
    backoff, rng = Backoff(initial_s=1, max_s=60), random.Random(7)
    delays = [backoff.delay(attempt, rng) for attempt in range(12)]
    assert all(0.5 <= d <= 60 for d in delays) and delays[0] <= 1 and min(delays[8:]) >= 30
    assert len({round(backoff.delay(5, rng), 6) for _ in range(5)}) == 5  # jittered
