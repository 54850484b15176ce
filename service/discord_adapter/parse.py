"""Discord JSON in, domain values out: pure functions, no client, no I/O.

The adapter reads the gateway's raw dispatch payloads (GUILD_MEMBER_ADD, INVITE_CREATE, ...,
GUILD_AUDIT_LOG_ENTRY_CREATE) and the REST
answers (GET /guilds/{id}/invites, /members, /vanity-url) as the same JSON shapes Discord documents, so one
parser serves both and can be tested on plain dicts. Reading the raw payloads rather than the library's
models also keeps the adapter off interactions.py's private attributes (`Invite._inviter_id`).

Only plain fields are read (ids, names, counts, ISO times): the library's own processor may, in its task,
turn nested values such as avatars into `Asset` objects in the dicts it shares with us, never these.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from service.events import InviteFinalUses, MemberInfo
from service.records import InviteState

Json = Mapping[str, Any]

#: The audit log's action type for an invite deleted (by hand: Discord writes none when one expires).
AUDIT_INVITE_DELETE = 42
DISCORD_EPOCH_MS = 1_420_070_400_000


class PayloadError(ValueError):
    """A payload lacks a field the ledger cannot do without (an id, a code)."""


def parse_time(value: Any) -> datetime | None:
    """Discord's ISO 8601 timestamps as aware UTC datetimes; None for null or missing. A naive value (not
    something Discord sends) is read as UTC rather than in the machine's zone."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(str(value))
        except ValueError as exc:
            raise PayloadError(f"not an ISO 8601 time: {value!r}") from exc
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    # A plain datetime (not the library's Timestamp subclass, whose str() is Discord markup).
    return datetime.fromtimestamp(moment.timestamp(), UTC)


def _snowflake(value: Any, what: str) -> str:
    text = str(value) if value is not None else ""
    if not text.isdigit():
        raise PayloadError(f"{what} is not a snowflake: {value!r}")
    return text


def user_id_of(data: Json) -> str:
    """The user id of a member payload ({"user": {...}}) or of a bare user payload."""
    user = data.get("user", data)
    return _snowflake(user.get("id") if isinstance(user, Mapping) else None, "user id")


def member_info(data: Json) -> MemberInfo:
    """A guild member object (GUILD_MEMBER_ADD's payload, an item of GET /guilds/{id}/members)."""
    user = data.get("user")
    if not isinstance(user, Mapping):
        raise PayloadError("member payload without a user")
    username = str(user.get("username") or "")
    display = data.get("nick") or user.get("global_name") or username
    return MemberInfo(
        user_id=_snowflake(user.get("id"), "user id"),
        username=username,
        display_name=str(display),
        joined_at=parse_time(data.get("joined_at")),
        bot=bool(user.get("bot", False)),
        flags=int(data.get("flags") or 0),
    )


def invite_state(data: Json) -> InviteState:
    """An invite object with metadata (GET /guilds/{id}/invites, INVITE_CREATE). `uses` is 0 when Discord
    leaves it out (it does without Manage Guild), as the library does."""
    code = data.get("code")
    if not code:
        raise PayloadError("invite payload without a code")
    inviter = data.get("inviter")
    inviter_id = inviter_name = None
    if isinstance(inviter, Mapping) and inviter.get("id") is not None:
        inviter_id = _snowflake(inviter.get("id"), "inviter id")
        inviter_name = inviter.get("username")
    channel = data.get("channel")
    channel_id = channel.get("id") if isinstance(channel, Mapping) else data.get("channel_id")
    return InviteState(
        code=str(code),
        uses=int(data.get("uses") or 0),
        max_uses=int(data.get("max_uses") or 0),
        inviter_id=inviter_id,
        inviter_name=None if inviter_name is None else str(inviter_name),
        expires_at=parse_time(data.get("expires_at")),
        channel_id=None if channel_id is None else str(channel_id),
        created_at=parse_time(data.get("created_at")),
    )


def vanity(data: Json | None) -> tuple[str | None, int | None]:
    """GET /guilds/{id}/vanity-url: (code, uses); (None, None) when the guild has no vanity URL."""
    if not data or not data.get("code"):
        return None, None
    uses = data.get("uses")
    return str(data["code"]), None if uses is None else int(uses)


def invite_final_uses(data: Json, at: datetime) -> InviteFinalUses:
    """GUILD_AUDIT_LOG_ENTRY_CREATE for an INVITE_DELETE (action type 42): an audit log entry object with a
    `guild_id`, whose `changes` hold the deleted invite's fields as `old_value`s (`code`, `uses`,
    `max_uses`, `inviter_id`, `channel_id`, ...). Discord guarantees no change key, so one without the code
    or the uses is refused (its count is unknown); the entry id, a snowflake, says when it was made."""
    if data.get("action_type") != AUDIT_INVITE_DELETE:
        raise PayloadError(f"not an INVITE_DELETE audit log entry: {data.get('action_type')!r}")
    old = {
        change.get("key"): change.get("old_value")
        for change in data.get("changes") or ()
        if isinstance(change, Mapping)
    }
    code, uses = old.get("code"), old.get("uses")
    if not code or uses is None:
        raise PayloadError("INVITE_DELETE audit log entry without the invite's code and uses")
    entry_id = _snowflake(data.get("id"), "audit log entry id")
    max_uses, inviter_id = old.get("max_uses"), old.get("inviter_id")
    return InviteFinalUses(
        _snowflake(data.get("guild_id"), "guild id"),
        at,
        code=str(code),
        uses=int(uses),
        max_uses=None if max_uses is None else int(max_uses),
        inviter_id=None if inviter_id is None else _snowflake(inviter_id, "inviter id"),
        deleted_at=datetime.fromtimestamp(((int(entry_id) >> 22) + DISCORD_EPOCH_MS) / 1000, UTC),
    )
