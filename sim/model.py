"""The simulated Discord world's objects: users, guilds, channels, members, invites, messages.

Plain mutable attrs classes owned by `sim.world.SimWorld`; nothing here does I/O. Ids are ints inside the
simulator and decimal strings on the wire (see `sim.payloads`).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import attrs

from sim.discord_constants import MessageFlag, Permission, snowflake_time

#: `via` value for a join through the guild's vanity URL.
VANITY = "vanity"


@attrs.define(eq=False)
class SimUser:
    id: int
    username: str
    global_name: str | None = None
    bot: bool = False

    @property
    def created_at(self) -> datetime:
        """Read from the snowflake, as a bot would compute account age."""
        return snowflake_time(self.id)


@attrs.define(eq=False)
class SimRole:
    id: int
    name: str
    permissions: int
    position: int = 0
    color: int = 0


@attrs.define(eq=False)
class SimChannel:
    id: int
    guild_id: int
    name: str
    type: int = 0
    position: int = 0


@attrs.define(eq=False)
class SimMember:
    user: SimUser
    guild_id: int
    joined_at: datetime
    flags: int = 0
    nick: str | None = None
    role_ids: list[int] = attrs.field(factory=list)
    #: Permissions sent with this member's interactions; None means "work it out" (owner: all, else roles).
    permissions: int | None = None
    #: The simulator's ground truth of how they came in: an invite code, VANITY, or None (no invite,
    #: e.g. discovery or added by a bot). A bot never sees this; tests compare its attribution against it.
    joined_via: str | None = None

    @property
    def id(self) -> int:
        return self.user.id


@attrs.define(eq=False)
class SimInvite:
    code: str
    guild_id: int
    channel_id: int
    inviter_id: int | None
    created_at: datetime
    max_uses: int = 0  # 0: unlimited
    max_age: int = 0  # seconds; 0: never expires
    temporary: bool = False
    uses: int = 0

    @property
    def expires_at(self) -> datetime | None:
        return self.created_at + timedelta(seconds=self.max_age) if self.max_age else None

    def expired(self, now: datetime) -> bool:
        expires_at = self.expires_at
        return expires_at is not None and now >= expires_at


@attrs.define(eq=False)
class SimGuild:
    id: int
    name: str
    owner_id: int
    #: Permissions the bot has in this guild (sent as app_permissions, and deciding what it may see).
    bot_permissions: int
    channels: dict[int, SimChannel] = attrs.field(factory=dict)
    roles: dict[int, SimRole] = attrs.field(factory=dict)
    members: dict[int, SimMember] = attrs.field(factory=dict)
    #: Everyone who was ever a member and left: a later join gets the DID_REJOIN member flag.
    former_member_ids: set[int] = attrs.field(factory=set)
    vanity_code: str | None = None
    vanity_uses: int = 0
    system_channel_id: int | None = None

    @property
    def everyone_role(self) -> SimRole:
        return self.roles[self.id]

    def channel_named(self, name: str) -> SimChannel:
        for channel in self.channels.values():
            if channel.name == name:
                return channel
        raise KeyError(f"guild {self.name!r} has no channel named {name!r}")

    def member_permissions(self, member: SimMember) -> int:
        """What Discord would compute for a member in this guild (owner and administrators get all)."""
        if member.permissions is not None:
            return member.permissions
        if member.id == self.owner_id:
            return Permission.ALL
        permissions = self.everyone_role.permissions
        for role_id in member.role_ids:
            if role := self.roles.get(role_id):
                permissions |= role.permissions
        return Permission.ALL if permissions & Permission.ADMINISTRATOR else permissions


@attrs.define(eq=False)
class StoredFile:
    """A file as the bot uploaded it (multipart `files[n]`), bytes kept so tests can read them."""

    filename: str
    content_type: str | None
    data: bytes
    description: str | None = None


@attrs.define(eq=False)
class SimAttachment:
    id: int
    file: StoredFile
    url: str

    @property
    def filename(self) -> str:
        return self.file.filename

    @property
    def data(self) -> bytes:
        return self.file.data


@attrs.define(eq=False)
class SimMessage:
    id: int
    channel_id: int
    guild_id: int | None
    author_id: int
    created_at: datetime
    content: str = ""
    embeds: list[dict[str, Any]] = attrs.field(factory=list)
    components: list[dict[str, Any]] = attrs.field(factory=list)
    attachments: list[SimAttachment] = attrs.field(factory=list)
    flags: int = 0
    type: int = 0
    edited_at: datetime | None = None
    webhook_id: int | None = None
    application_id: int | None = None
    interaction_id: int | None = None
    deleted: bool = False

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & MessageFlag.EPHEMERAL)

    def iter_components(self) -> Iterator[dict[str, Any]]:
        """Every component in the message, action rows flattened."""
        stack = list(self.components)
        while stack:
            component = stack.pop(0)
            yield component
            stack[:0] = component.get("components", [])

    def component(self, custom_id: str) -> dict[str, Any]:
        for component in self.iter_components():
            if component.get("custom_id") == custom_id:
                return component
        known = [c["custom_id"] for c in self.iter_components() if "custom_id" in c]
        raise KeyError(f"message {self.id} has no component {custom_id!r} (it has {known})")


@attrs.frozen
class GatewayEvent:
    """A dispatch the world wants sent to the bot: the gateway sends it to every session whose intents
    include `intent` (0: always)."""

    name: str
    data: dict[str, Any]
    intent: int = 0
    #: Permission the bot needs in the event's guild to receive it (0: none), e.g. Manage Channels for
    #: INVITE_CREATE and INVITE_DELETE.
    permission: int = 0
    guild_id: int | None = None
