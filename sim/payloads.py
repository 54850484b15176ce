"""Discord's JSON shapes for the simulator's objects (ids as decimal strings, times as ISO 8601).

Each function builds what Discord's API reference documents and what interactions.py 5.16's models need to
parse (e.g. users carry `discriminator` "0" and `avatar` null; guild members carry `roles` and `joined_at`).
"""

from __future__ import annotations

from typing import Any

from sim.discord_constants import AUDIT_INVITE_DELETE, iso
from sim.model import (
    SimAttachment,
    SimChannel,
    SimGuild,
    SimInvite,
    SimMember,
    SimMessage,
    SimRole,
    SimUser,
)


def user(u: SimUser) -> dict[str, Any]:
    return {
        "id": str(u.id),
        "username": u.username,
        "global_name": u.global_name,
        "discriminator": "0",
        "avatar": None,
        "bot": u.bot,
        "system": False,
        "public_flags": 0,
        "flags": 0,
    }


def current_user(u: SimUser) -> dict[str, Any]:
    """GET /users/@me: interactions.py's ClientUser requires `verified`."""
    return user(u) | {"verified": True, "mfa_enabled": False, "locale": "en-US", "email": None}


def member(m: SimMember, *, with_user: bool = True) -> dict[str, Any]:
    data: dict[str, Any] = {
        "nick": m.nick,
        "avatar": None,
        "roles": [str(r) for r in m.role_ids],
        "joined_at": iso(m.joined_at),
        "premium_since": None,
        "deaf": False,
        "mute": False,
        "flags": m.flags,
        "pending": False,
        "communication_disabled_until": None,
    }
    if with_user:
        data["user"] = user(m.user)
    return data


def role(r: SimRole) -> dict[str, Any]:
    return {
        "id": str(r.id),
        "name": r.name,
        "color": r.color,
        "hoist": False,
        "icon": None,
        "unicode_emoji": None,
        "position": r.position,
        "permissions": str(r.permissions),
        "managed": False,
        "mentionable": False,
        "flags": 0,
    }


def channel(c: SimChannel) -> dict[str, Any]:
    return {
        "id": str(c.id),
        "type": c.type,
        "guild_id": str(c.guild_id),
        "name": c.name,
        "position": c.position,
        "permission_overwrites": [],
        "nsfw": False,
        "topic": None,
        "last_message_id": None,
        "rate_limit_per_user": 0,
        "parent_id": None,
    }


def partial_channel(c: SimChannel) -> dict[str, Any]:
    return {"id": str(c.id), "name": c.name, "type": c.type}


def guild_base(g: SimGuild) -> dict[str, Any]:
    """The fields shared by GUILD_CREATE and GET /guilds/{id}."""
    features = ["VANITY_URL", "INVITE_SPLASH"] if g.vanity_code else []
    return {
        "id": str(g.id),
        "name": g.name,
        "icon": None,
        "splash": None,
        "discovery_splash": None,
        "owner_id": str(g.owner_id),
        "afk_channel_id": None,
        "afk_timeout": 300,
        "verification_level": 0,
        "default_message_notifications": 0,
        "explicit_content_filter": 0,
        "roles": [role(r) for r in g.roles.values()],
        "emojis": [],
        "stickers": [],
        "features": features,
        "mfa_level": 0,
        "application_id": None,
        "system_channel_id": str(g.system_channel_id) if g.system_channel_id else None,
        "system_channel_flags": 0,
        "rules_channel_id": None,
        "vanity_url_code": g.vanity_code,
        "description": None,
        "banner": None,
        "premium_tier": 0,
        "premium_subscription_count": 0,
        "preferred_locale": "en-US",
        "public_updates_channel_id": None,
        "nsfw_level": 0,
        "premium_progress_bar_enabled": False,
        "safety_alerts_channel_id": None,
    }


def guild_create(g: SimGuild, *, bot_id: int, joined_at: str | None, large_threshold: int) -> dict[str, Any]:
    """GUILD_CREATE: Discord sends at most `large_threshold` members (always including the bot itself)."""
    members = [m for m in g.members.values() if m.id == bot_id]
    members += [m for m in g.members.values() if m.id != bot_id][: max(0, large_threshold - len(members))]
    return guild_base(g) | {
        "joined_at": joined_at,
        "large": len(g.members) > large_threshold,
        "unavailable": False,
        "member_count": len(g.members),
        "voice_states": [],
        "members": [member(m) for m in members],
        "channels": [channel(c) for c in g.channels.values()],
        "threads": [],
        "presences": [],
        "stage_instances": [],
        "guild_scheduled_events": [],
    }


def invite(inv: SimInvite, g: SimGuild, inviter: SimUser | None, *, with_uses: bool = True) -> dict[str, Any]:
    """An invite with its metadata, as GET /guilds/{id}/invites lists it. Without Manage Guild Discord
    leaves the usage counters out (the library then reads uses as 0)."""
    data: dict[str, Any] = {
        "type": 0,
        "code": inv.code,
        "guild": {
            "id": str(g.id),
            "name": g.name,
            "icon": None,
            "splash": None,
            "banner": None,
            "description": None,
            "features": [],
            "verification_level": 0,
            "vanity_url_code": g.vanity_code,
            "nsfw_level": 0,
            "premium_subscription_count": 0,
        },
        "channel": partial_channel(g.channels[inv.channel_id]),
        "max_age": inv.max_age,
        "temporary": inv.temporary,
        "created_at": iso(inv.created_at),
        "expires_at": iso(inv.expires_at),
    }
    if inviter is not None:
        data["inviter"] = user(inviter)
    if with_uses:
        data["uses"] = inv.uses
        data["max_uses"] = inv.max_uses
    return data


def invite_create_event(inv: SimInvite, inviter: SimUser | None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "channel_id": str(inv.channel_id),
        "guild_id": str(inv.guild_id),
        "code": inv.code,
        "created_at": iso(inv.created_at),
        "max_age": inv.max_age,
        "max_uses": inv.max_uses,
        "temporary": inv.temporary,
        "uses": inv.uses,
    }
    if inviter is not None:
        data["inviter"] = user(inviter)
    return data


def invite_delete_event(inv: SimInvite) -> dict[str, Any]:
    return {"channel_id": str(inv.channel_id), "guild_id": str(inv.guild_id), "code": inv.code}


def audit_invite_delete(entry_id: int, inv: SimInvite, by_user_id: int | None) -> dict[str, Any]:
    """GUILD_AUDIT_LOG_ENTRY_CREATE for an invite deleted by hand: an audit log entry object with the
    guild's id, whose changes hold the invite's fields as they were (old values only: it is gone)."""
    old = {
        "code": inv.code,
        "channel_id": str(inv.channel_id),
        "inviter_id": None if inv.inviter_id is None else str(inv.inviter_id),
        "uses": inv.uses,
        "max_uses": inv.max_uses,
        "max_age": inv.max_age,
        "temporary": inv.temporary,
        "flags": 0,
    }
    return {
        "guild_id": str(inv.guild_id),
        "id": str(entry_id),
        "action_type": AUDIT_INVITE_DELETE,
        "target_id": None,
        "user_id": None if by_user_id is None else str(by_user_id),
        "changes": [{"key": key, "old_value": value} for key, value in old.items() if value is not None],
    }


def attachment(a: SimAttachment) -> dict[str, Any]:
    return {
        "id": str(a.id),
        "filename": a.file.filename,
        "description": a.file.description,
        "content_type": a.file.content_type,
        "size": len(a.file.data),
        "url": a.url,
        "proxy_url": a.url,
        "ephemeral": False,
    }


def message(msg: SimMessage, author: SimUser) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": str(msg.id),
        "type": msg.type,
        "channel_id": str(msg.channel_id),
        "author": user(author),
        "content": msg.content,
        "timestamp": iso(msg.created_at),
        "edited_timestamp": iso(msg.edited_at),
        "tts": False,
        "mention_everyone": False,
        "mentions": [],
        "mention_roles": [],
        "attachments": [attachment(a) for a in msg.attachments],
        "embeds": msg.embeds,
        "components": msg.components,
        "pinned": False,
        "flags": msg.flags,
    }
    if msg.guild_id is not None:
        data["guild_id"] = str(msg.guild_id)
    if msg.webhook_id is not None:
        data["webhook_id"] = str(msg.webhook_id)
    if msg.application_id is not None:
        data["application_id"] = str(msg.application_id)
    return data
