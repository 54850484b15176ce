"""The simulated Discord's state and the changes scripts and REST calls make to it.

No I/O here: each change updates the state and returns the gateway events Discord would send because of it
(`GatewayEvent`), and the caller (`sim.server.SimServer`, `sim.rest`) hands them to the gateway. That keeps
the rules (uses counting, max-uses deletion, rejoin flags, expiry) testable without sockets.
"""

from __future__ import annotations

import secrets
import string
from datetime import UTC, datetime, timedelta
from typing import Any

from sim import payloads
from sim.app_commands import CommandRegistry
from sim.discord_constants import ErrorCode, Intent, MemberFlag, Permission, iso, snowflake_at
from sim.errors import DiscordAPIError
from sim.model import (
    VANITY,
    GatewayEvent,
    SimAttachment,
    SimChannel,
    SimGuild,
    SimInvite,
    SimMember,
    SimMessage,
    SimRole,
    SimUser,
    StoredFile,
)

#: interactions.py always identifies with large_threshold 250; GUILD_CREATE carries at most that many members.
LARGE_THRESHOLD = 250


#: How scripts name things: the object itself (anything with an `id`), an int id, or a decimal string.
Ref = Any


def ref_id(obj: Ref) -> int:
    found: Any = getattr(obj, "id", obj)
    return int(found)


class SimWorld:
    def __init__(self, *, bot_name: str = "InviteLedger", app_owner_name: str = "app-owner") -> None:
        self._clock_offset = timedelta(0)
        self.users: dict[int, SimUser] = {}
        self.guilds: dict[int, SimGuild] = {}
        self.channels: dict[int, SimChannel] = {}
        self.invites: dict[str, SimInvite] = {}
        self.messages: dict[int, SimMessage] = {}
        self.attachments: dict[int, SimAttachment] = {}
        #: Where attachment bytes are served; set by the server once it knows its port.
        self.attachment_base_url = "http://127.0.0.1"
        created = self.now() - timedelta(days=400)
        self.app_owner = self.add_user(app_owner_name, created_at=created)
        self.bot_user = self.add_user(bot_name, bot=True, created_at=created)
        # Modern applications share their id with their bot user.
        self.application_id = self.bot_user.id
        self.application_name = bot_name
        self.commands = CommandRegistry(self.application_id, self.new_id)

    # -- time and ids -------------------------------------------------------------------------------

    def now(self) -> datetime:
        return datetime.now(UTC) + self._clock_offset

    def advance_time(self, seconds: float) -> None:
        """Move the simulated clock forward (invite expiry, joined_at, new snowflakes), without sleeping."""
        self._clock_offset += timedelta(seconds=seconds)

    def new_id(self, at: datetime | None = None) -> int:
        return snowflake_at(at or self.now())

    # -- lookups ------------------------------------------------------------------------------------

    def user(self, ref: Ref) -> SimUser:
        try:
            return self.users[ref_id(ref)]
        except KeyError:
            raise DiscordAPIError(404, "Unknown User", ErrorCode.UNKNOWN_USER) from None

    def guild(self, ref: Ref) -> SimGuild:
        try:
            return self.guilds[ref_id(ref)]
        except KeyError:
            raise DiscordAPIError(404, "Unknown Guild", ErrorCode.UNKNOWN_GUILD) from None

    def channel(self, ref: Ref) -> SimChannel:
        try:
            return self.channels[ref_id(ref)]
        except KeyError:
            raise DiscordAPIError(404, "Unknown Channel", ErrorCode.UNKNOWN_CHANNEL) from None

    def member(self, guild_ref: Ref, user_ref: Ref) -> SimMember:
        try:
            return self.guild(guild_ref).members[ref_id(user_ref)]
        except KeyError:
            raise DiscordAPIError(404, "Unknown Member", ErrorCode.UNKNOWN_MEMBER) from None

    def bot_can(self, guild: SimGuild, permission: int) -> bool:
        granted = guild.bot_permissions
        return bool(granted & Permission.ADMINISTRATOR) or granted & permission == permission

    def require_bot_permission(self, guild: SimGuild, permission: int) -> None:
        if not self.bot_can(guild, permission):
            raise DiscordAPIError(403, "Missing Permissions", ErrorCode.MISSING_PERMISSIONS)

    # -- users and guilds ---------------------------------------------------------------------------

    def add_user(
        self,
        name: str,
        *,
        bot: bool = False,
        created_at: datetime | None = None,
        global_name: str | None = None,
    ) -> SimUser:
        """A Discord account; its id's timestamp is `created_at` (default: now)."""
        new = SimUser(id=self.new_id(created_at), username=name, global_name=global_name, bot=bot)
        self.users[new.id] = new
        return new

    def add_guild(
        self,
        name: str,
        *,
        owner: Ref | None = None,
        channels: tuple[str, ...] = ("general", "join-log"),
        vanity_code: str | None = None,
        vanity_uses: int = 0,
        bot_permissions: int = Permission.INVITE_TRACKER_BOT,
        everyone_permissions: int = Permission.EVERYONE_DEFAULT,
    ) -> tuple[SimGuild, list[GatewayEvent]]:
        """A guild with its owner and the bot as members; GUILD_CREATE goes to connected sessions."""
        now = self.now()
        owner_user = self.user(owner) if owner is not None else self.add_user(f"{name}-owner")
        guild = SimGuild(
            id=self.new_id(),
            name=name,
            owner_id=owner_user.id,
            bot_permissions=bot_permissions,
            vanity_code=vanity_code,
            vanity_uses=vanity_uses,
        )
        guild.roles[guild.id] = SimRole(id=guild.id, name="@everyone", permissions=everyone_permissions)
        for position, channel_name in enumerate(channels):
            channel = SimChannel(id=self.new_id(), guild_id=guild.id, name=channel_name, position=position)
            guild.channels[channel.id] = channel
            self.channels[channel.id] = channel
        guild.system_channel_id = next(iter(guild.channels), None)
        self.guilds[guild.id] = guild
        self.add_member(guild, owner_user, joined_at=now)
        self.add_member(guild, self.bot_user, joined_at=now)
        return guild, [self.guild_create_event(guild)]

    def guild_create_event(self, guild: SimGuild) -> GatewayEvent:
        bot_member = guild.members.get(self.bot_user.id)
        joined_at = iso(bot_member.joined_at) if bot_member else None
        data = payloads.guild_create(
            guild, bot_id=self.bot_user.id, joined_at=joined_at, large_threshold=LARGE_THRESHOLD
        )
        return GatewayEvent("GUILD_CREATE", data, intent=Intent.GUILDS, guild_id=guild.id)

    def add_role(self, guild_ref: Ref, name: str, permissions: int) -> SimRole:
        guild = self.guild(guild_ref)
        new = SimRole(id=self.new_id(), name=name, permissions=permissions, position=len(guild.roles))
        guild.roles[new.id] = new
        return new

    def set_vanity(self, guild_ref: Ref, code: str | None, uses: int = 0) -> None:
        guild = self.guild(guild_ref)
        guild.vanity_code, guild.vanity_uses = code, uses

    # -- members ------------------------------------------------------------------------------------

    def add_member(
        self,
        guild_ref: Ref,
        user_ref: Ref,
        *,
        joined_at: datetime | None = None,
        role_ids: list[int] | None = None,
        permissions: int | None = None,
        joined_via: str | None = None,
    ) -> SimMember:
        """Make someone a member without any event or invite use (setting up the world)."""
        guild, user = self.guild(guild_ref), self.user(user_ref)
        new = SimMember(
            user=user,
            guild_id=guild.id,
            joined_at=joined_at or self.now(),
            role_ids=list(role_ids or []),
            permissions=permissions,
            joined_via=joined_via,
        )
        guild.members[user.id] = new
        return new

    def join(
        self, guild_ref: Ref, user_ref: Ref, via: str | None = None
    ) -> tuple[SimMember, list[GatewayEvent]]:
        """A person joins: through invite code `via`, through the vanity URL (`via=VANITY`), or with no invite
        (`via=None`: discovery, added by a bot). Uses rise; an invite reaching max uses is deleted."""
        guild, user = self.guild(guild_ref), self.user(user_ref)
        if user.id in guild.members:
            raise ValueError(f"{user.username} is already a member of {guild.name}")
        now = self.now()
        used_invite: SimInvite | None = None
        if via == VANITY:
            if not guild.vanity_code:
                raise ValueError(f"{guild.name} has no vanity URL")
            guild.vanity_uses += 1
        elif via is not None:
            used_invite = self.invites.get(via)
            if used_invite is None or used_invite.guild_id != guild.id:
                raise ValueError(f"no invite {via!r} in {guild.name}")
            if used_invite.expired(now):
                del self.invites[via]
                raise ValueError(f"invite {via!r} expired at {used_invite.expires_at}")
            used_invite.uses += 1
        member = self.add_member(guild, user, joined_at=now, joined_via=via)
        if user.id in guild.former_member_ids:
            member.flags |= MemberFlag.DID_REJOIN
        events = [self.member_add_event(member)]
        if used_invite is not None and used_invite.max_uses and used_invite.uses >= used_invite.max_uses:
            # Discord deletes an invite when its last use is spent; the delete event follows the join.
            del self.invites[used_invite.code]
            events.append(self._invite_delete_event(used_invite))
        return member, events

    def member_add_event(self, member: SimMember) -> GatewayEvent:
        data = payloads.member(member) | {"guild_id": str(member.guild_id)}
        return GatewayEvent("GUILD_MEMBER_ADD", data, intent=Intent.GUILD_MEMBERS, guild_id=member.guild_id)

    def leave(self, guild_ref: Ref, user_ref: Ref) -> tuple[SimMember, list[GatewayEvent]]:
        guild, user = self.guild(guild_ref), self.user(user_ref)
        member = guild.members.pop(user.id, None)
        if member is None:
            raise ValueError(f"{user.username} is not a member of {guild.name}")
        guild.former_member_ids.add(user.id)
        data = {"guild_id": str(guild.id), "user": payloads.user(user)}
        return member, [
            GatewayEvent("GUILD_MEMBER_REMOVE", data, intent=Intent.GUILD_MEMBERS, guild_id=guild.id)
        ]

    def list_members(self, guild_ref: Ref, *, limit: int = 1, after: int = 0) -> list[SimMember]:
        """GET /guilds/{id}/members: by user id, ascending, starting after `after`."""
        members = sorted(self.guild(guild_ref).members.values(), key=lambda m: m.id)
        return [m for m in members if m.id > after][:limit]

    # -- invites ------------------------------------------------------------------------------------

    def create_invite(
        self,
        guild_ref: Ref,
        inviter_ref: Ref | None,
        *,
        code: str | None = None,
        max_uses: int = 0,
        max_age: int = 0,
        channel_ref: Ref | None = None,
        temporary: bool = False,
    ) -> tuple[SimInvite, list[GatewayEvent]]:
        guild = self.guild(guild_ref)
        inviter = self.user(inviter_ref) if inviter_ref is not None else None
        code = code or self._fresh_code()
        if code in self.invites:
            raise ValueError(f"invite code {code!r} already exists")
        channel = (
            self.channel(channel_ref) if channel_ref is not None else self.channel(guild.system_channel_id)
        )
        new = SimInvite(
            code=code,
            guild_id=guild.id,
            channel_id=channel.id,
            inviter_id=inviter.id if inviter else None,
            created_at=self.now(),
            max_uses=max_uses,
            max_age=max_age,
            temporary=temporary,
        )
        self.invites[code] = new
        data = payloads.invite_create_event(new, inviter)
        event = GatewayEvent(
            "INVITE_CREATE",
            data,
            intent=Intent.GUILD_INVITES,
            permission=Permission.MANAGE_CHANNELS,
            guild_id=guild.id,
        )
        return new, [event]

    def delete_invite(self, code: str, by: Ref | None = None) -> tuple[SimInvite, list[GatewayEvent]]:
        """Someone (`by`, a user) deletes an invite: INVITE_DELETE, and an audit log entry with the invite's
        fields as they were, uses included. Only a deletion by hand is audited here: Discord writes no entry
        when an invite expires, and none is sent here when one is used up (`join`)."""
        invite = self.invites.pop(code, None)
        if invite is None:
            raise DiscordAPIError(404, "Unknown Invite", ErrorCode.UNKNOWN_INVITE)
        by_id = None if by is None else self.user(by).id
        audit = GatewayEvent(
            "GUILD_AUDIT_LOG_ENTRY_CREATE",
            payloads.audit_invite_delete(self.new_id(), invite, by_id),
            intent=Intent.GUILD_MODERATION,
            permission=Permission.VIEW_AUDIT_LOG,
            guild_id=invite.guild_id,
        )
        return invite, [self._invite_delete_event(invite), audit]

    def _invite_delete_event(self, invite: SimInvite) -> GatewayEvent:
        return GatewayEvent(
            "INVITE_DELETE",
            payloads.invite_delete_event(invite),
            intent=Intent.GUILD_INVITES,
            permission=Permission.MANAGE_CHANNELS,
            guild_id=invite.guild_id,
        )

    def live_invites(self, guild_ref: Ref) -> list[SimInvite]:
        """The guild's invites, oldest first; expired ones are dropped on the way (silently, no event)."""
        guild, now = self.guild(guild_ref), self.now()
        for code in [c for c, inv in self.invites.items() if inv.guild_id == guild.id and inv.expired(now)]:
            del self.invites[code]
        return sorted(
            (i for i in self.invites.values() if i.guild_id == guild.id), key=lambda i: i.created_at
        )

    def _fresh_code(self) -> str:
        alphabet = string.ascii_letters + string.digits
        while True:
            code = "".join(secrets.choice(alphabet) for _ in range(8))
            if code not in self.invites:
                return code

    # -- messages -----------------------------------------------------------------------------------

    def new_message(
        self, channel_id: int, guild_id: int | None, author: SimUser, **fields: Any
    ) -> SimMessage:
        msg = SimMessage(
            id=self.new_id(),
            channel_id=channel_id,
            guild_id=guild_id,
            author_id=author.id,
            created_at=self.now(),
            **fields,
        )
        self.messages[msg.id] = msg
        return msg

    def apply_message_body(
        self, msg: SimMessage, body: dict[str, Any], files: list[StoredFile], *, editing: bool
    ) -> None:
        """Apply a message create/edit JSON body and its uploaded files to `msg`.

        An edit's `attachments` list names the existing attachments to keep (by id) plus the new uploads (by
        upload index); without that key every existing attachment stays and new uploads are added.
        """
        for key in ("content", "embeds", "components"):
            if key in body and body[key] is not None:
                setattr(msg, key, body[key])
        if "flags" in body and body["flags"] is not None and not editing:
            msg.flags = int(body["flags"])
        if editing and "attachments" in body and body["attachments"] is not None:
            keep = {str(a.get("id")) for a in body["attachments"]}
            msg.attachments = [a for a in msg.attachments if str(a.id) in keep]
        for stored in files:
            attachment_id = self.new_id()
            url = f"{self.attachment_base_url}/attachments/{msg.channel_id}/{attachment_id}/{stored.filename}"
            attachment = SimAttachment(id=attachment_id, file=stored, url=url)
            self.attachments[attachment_id] = attachment
            msg.attachments.append(attachment)
        if editing:
            msg.edited_at = self.now()

    def post_channel_message(
        self, channel_ref: Ref, author: SimUser, body: dict[str, Any], files: list[StoredFile]
    ) -> tuple[SimMessage, list[GatewayEvent]]:
        """POST /channels/{id}/messages (e.g. the bot's join log)."""
        channel = self.channel(channel_ref)
        guild = self.guild(channel.guild_id)
        if author.id == self.bot_user.id:
            needed = Permission.VIEW_CHANNEL | Permission.SEND_MESSAGES
            self.require_bot_permission(guild, needed | (Permission.ATTACH_FILES if files else 0))
        if not (body.get("content") or body.get("embeds") or files or body.get("components")):
            raise DiscordAPIError(400, "Cannot send an empty message", 50006)
        msg = self.new_message(channel.id, guild.id, author)
        self.apply_message_body(msg, body, files, editing=False)
        data = payloads.message(msg, author)
        return msg, [GatewayEvent("MESSAGE_CREATE", data, intent=Intent.GUILD_MESSAGES, guild_id=guild.id)]

    def channel_messages(self, channel_ref: Ref) -> list[SimMessage]:
        channel_id = ref_id(channel_ref)
        return [m for m in self.messages.values() if m.channel_id == channel_id and not m.deleted]

    def message_payload(self, msg: SimMessage) -> dict[str, Any]:
        return payloads.message(msg, self.users[msg.author_id])

    # -- application commands -----------------------------------------------------------------------

    def scope_of(self, guild_id: int | str | None) -> int | None:
        if guild_id is None:
            return None
        return self.guild(guild_id).id
