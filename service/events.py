"""Domain events: what the gateway adapter and the REST calls tell the rest of the service.

Every event is a frozen attrs class and travels through the one cattrs converter (`service.convert.structure`
and `unstructure`), like the log's records. Two clocks appear here and are never mixed up:

- `at` is the bot's own clock (UTC, with offset) when the event reached the bot, or when a fetch's answer came
  back. The attribution core reads no clock: these `at` values are its only notion of time.
- `joined_at`, `created_at` and `expires_at` come from Discord's clock, as Discord sent them.

Identifiers are Discord snowflakes kept as decimal strings, as in `service.records`.

The attribution core consumes these events (see `service.attribution` for how an actor drives it):

| event | when the actor feeds it |
| --- | --- |
| `GuildRestored` | at start-up, once per guild, built from the log by `service.attribution.restore_events` |
| `GuildAvailable` | GUILD_CREATE / Ready (also after a reconnect), with the member list if it has one |
| `GatewayDisconnected` | the gateway connection was lost (events may be missing until the next Ready) |
| `InviteCreated`, `InviteDeleted` | INVITE_CREATE, INVITE_DELETE |
| `InviteFinalUses` | GUILD_AUDIT_LOG_ENTRY_CREATE for INVITE_DELETE (action type 42): a deletion by hand |
| `MemberJoined`, `MemberRemoved` | GUILD_MEMBER_ADD, GUILD_MEMBER_REMOVE |
| `InvitesFetched`, `FetchRateLimited`, `FetchFailed` | the answer to a `FetchInvites` effect |
| `ClockTick` | when a `WakeAt` effect's time has come (extra ticks are harmless) |
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import attrs

from service.records import InviteSnapshotTaken, InviteState, JoinRecorded


def _aware(_instance: Any, attribute: attrs.Attribute[Any], value: datetime | None) -> None:
    # A naive time would silently be read in the machine's zone; the log refuses them, and so do events.
    if value is not None and value.tzinfo is None:
        raise ValueError(f"{attribute.name} must carry a UTC offset, got naive {value!r}")


#: Discord's guild member flag DID_REJOIN (bit 0): the member has left and rejoined the guild before.
MEMBER_FLAG_DID_REJOIN = 1 << 0


@attrs.frozen
class MemberInfo:
    """A member as Discord describes them in GUILD_MEMBER_ADD or in a guild's member list."""

    user_id: str
    username: str
    display_name: str
    joined_at: datetime | None = attrs.field(default=None, validator=_aware)  # Discord's clock
    bot: bool = False
    flags: int = 0  # Discord guild member flags; bit 0 is DID_REJOIN


@attrs.frozen
class RecordedMember:
    """A member the log says is in the guild: their last record there is a join at `joined_at`."""

    user_id: str
    joined_at: datetime = attrs.field(validator=_aware)


@attrs.frozen
class GuildRestored:
    """What the log knows about a guild, fed once at start-up before any other event of that guild.

    `snapshot` is the last logged invite snapshot, `recent_joins` the joins logged after it (and shortly
    before it), `last_seen` the latest time the log shows the guild. Joins that happened while the bot was
    down are found when the next `GuildAvailable` brings the member list.
    """

    guild_id: str
    guild_name: str
    snapshot: InviteSnapshotTaken | None = None
    last_seen: datetime | None = attrs.field(default=None, validator=_aware)
    recent_joins: tuple[JoinRecorded, ...] = ()
    known_user_ids: tuple[str, ...] = ()  # everyone who ever joined (for the rejoin flag)
    present: tuple[RecordedMember, ...] = ()  # members whose last record is a join
    #: The same as `present`, as user id -> join time in POSIX seconds: what start-up recovery gives, since
    #: building hundreds of thousands of datetimes only for the core to turn them back into floats took
    #: half of a million-record start-up. A member is in one of the two, not both.
    present_at: Mapping[str, float] | None = None


@attrs.frozen
class GuildAvailable:
    """The guild is available (GUILD_CREATE, also after every Ready).

    `members` is the guild's member list (or at least every member who joined since the bot last saw the
    guild); None when the adapter has none, in which case joins missed while disconnected cannot be told
    apart and the core treats that stretch of time as blind. `invites` may carry an invite list fetched
    by the adapter: then `invites_requested_at` must be the bot-clock time its request was sent, after
    GUILD_CREATE arrived.
    """

    guild_id: str
    guild_name: str
    at: datetime = attrs.field(validator=_aware)
    vanity_code: str | None = None
    members: tuple[MemberInfo, ...] | None = None
    invites: tuple[InviteState, ...] | None = None
    vanity_uses: int | None = None
    invites_requested_at: datetime | None = attrs.field(default=None, validator=_aware)

    def __attrs_post_init__(self) -> None:
        if self.invites is not None and self.invites_requested_at is None:
            raise ValueError("an invite list given with GuildAvailable needs invites_requested_at")


@attrs.frozen
class GatewayDisconnected:
    """The gateway connection was lost; `at` is when the last gateway message arrived before the loss.
    Events until the next Ready may be missing (Discord replays them only on a successful resume)."""

    at: datetime = attrs.field(validator=_aware)


@attrs.frozen
class InviteCreated:
    guild_id: str
    at: datetime = attrs.field(validator=_aware)
    invite: InviteState = attrs.field(kw_only=True)


@attrs.frozen
class InviteDeleted:
    """INVITE_DELETE: sent both when someone deletes an invite and when Discord deletes one used up to its
    max_uses. It carries no uses (the library reports 0), so the core never takes a count from it."""

    guild_id: str
    at: datetime = attrs.field(validator=_aware)
    code: str = attrs.field(kw_only=True)


@attrs.frozen
class InviteFinalUses:
    """An invite deleted by hand, from the audit log (GUILD_AUDIT_LOG_ENTRY_CREATE, action type 42, whose
    `changes` hold the invite's fields as `old_value`s): `uses` is its use count when it was deleted. That
    is the one count of a use in an invite's last seconds that no invite fetch may ever show; with it, the
    core knows exactly how many joins used the invite since it was last counted.

    `deleted_at` is when the entry was made, on Discord's clock (read from the entry id, a snowflake);
    `max_uses` and `inviter_id` are the entry's too, when it has them, so a count that belongs to another
    invite of the same code is not mistaken for this one's.
    """

    guild_id: str
    at: datetime = attrs.field(validator=_aware)
    code: str = attrs.field(kw_only=True)
    uses: int = attrs.field(kw_only=True)
    max_uses: int | None = attrs.field(default=None, kw_only=True)
    inviter_id: str | None = attrs.field(default=None, kw_only=True)
    deleted_at: datetime | None = attrs.field(default=None, kw_only=True, validator=_aware)


@attrs.frozen
class MemberJoined:
    guild_id: str
    at: datetime = attrs.field(validator=_aware)
    member: MemberInfo = attrs.field(kw_only=True)
    guild_name: str = attrs.field(default="", kw_only=True)  # used until GuildAvailable names the guild


@attrs.frozen
class MemberRemoved:
    guild_id: str
    at: datetime = attrs.field(validator=_aware)
    user_id: str = attrs.field(kw_only=True)


@attrs.frozen
class InvitesFetched:
    """The answer to `FetchInvites(guild_id, request_id)`: GET /guilds/{id}/invites (and the vanity URL's
    uses, None when unknown). `at` is when the answer arrived, read after the response came back."""

    guild_id: str
    request_id: int
    at: datetime = attrs.field(validator=_aware)
    invites: tuple[InviteState, ...] = attrs.field(kw_only=True)
    vanity_code: str | None = attrs.field(default=None, kw_only=True)
    vanity_uses: int | None = attrs.field(default=None, kw_only=True)


@attrs.frozen
class FetchRateLimited:
    """Discord answered 429: no fetch of this guild until `retry_after` seconds after `at`."""

    guild_id: str
    request_id: int
    at: datetime = attrs.field(validator=_aware)
    retry_after: float = attrs.field(kw_only=True)


@attrs.frozen
class FetchFailed:
    """The fetch gave nothing usable: an error, a timeout, or the library's None after repeated 429s."""

    guild_id: str
    request_id: int
    at: datetime = attrs.field(validator=_aware)
    reason: str = attrs.field(default="", kw_only=True)


@attrs.frozen
class ClockTick:
    at: datetime = attrs.field(validator=_aware)


Event = (
    GuildRestored
    | GuildAvailable
    | GatewayDisconnected
    | InviteCreated
    | InviteDeleted
    | InviteFinalUses
    | MemberJoined
    | MemberRemoved
    | InvitesFetched
    | FetchRateLimited
    | FetchFailed
    | ClockTick
)

#: Every event class, for converters and tests that need to enumerate them.
EVENT_CLASSES: tuple[type, ...] = (
    GuildRestored,
    GuildAvailable,
    GatewayDisconnected,
    InviteCreated,
    InviteDeleted,
    InviteFinalUses,
    MemberJoined,
    MemberRemoved,
    InvitesFetched,
    FetchRateLimited,
    FetchFailed,
    ClockTick,
)
