"""Discord's numbers the simulator speaks: snowflakes, permission bits, intents, opcodes, flags.

Kept in one place (instead of importing them from interactions.py) because the simulator plays Discord and
must not depend on the client it is testing: a wrong constant in the library must show up as a failing test,
not be copied into the server.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

API_VERSION = 10

# Snowflakes: milliseconds since the Discord epoch in the top 42 bits, then worker, process and increment.
DISCORD_EPOCH_MS = 1_420_070_400_000
_increment = itertools.count()


def snowflake_at(when: datetime) -> int:
    """A new, unique snowflake whose timestamp is `when` (so account age can be read from a user id)."""
    ms = int(when.timestamp() * 1000) - DISCORD_EPOCH_MS
    if ms < 0:
        raise ValueError(f"{when.isoformat()} is before the Discord epoch (2015-01-01)")
    # The low 22 bits (worker, process, increment) hold one running counter, so ids stay unique even when
    # a test creates thousands of users with the same creation time.
    return (ms << 22) | (next(_increment) % (1 << 22))


def snowflake_time(snowflake: int) -> datetime:
    """When a snowflake was made."""
    return datetime.fromtimestamp(((int(snowflake) >> 22) + DISCORD_EPOCH_MS) / 1000, tz=UTC)


def iso(when: datetime | None) -> str | None:
    """Discord's timestamp format: ISO 8601 with microseconds and +00:00."""
    return None if when is None else when.astimezone(UTC).isoformat(timespec="microseconds")


#: Audit log action types (`action_type`) the simulator writes.
AUDIT_INVITE_DELETE = 42


class Permission:
    """Permission bits used by the simulator (Discord sends them as decimal strings)."""

    CREATE_INSTANT_INVITE = 1 << 0
    KICK_MEMBERS = 1 << 1
    BAN_MEMBERS = 1 << 2
    ADMINISTRATOR = 1 << 3
    MANAGE_CHANNELS = 1 << 4
    MANAGE_GUILD = 1 << 5
    VIEW_AUDIT_LOG = 1 << 7
    VIEW_CHANNEL = 1 << 10
    SEND_MESSAGES = 1 << 11
    EMBED_LINKS = 1 << 14
    ATTACH_FILES = 1 << 15
    READ_MESSAGE_HISTORY = 1 << 16
    USE_APPLICATION_COMMANDS = 1 << 31

    ALL = (1 << 51) - 1
    # What @everyone gets in a new guild, roughly: see channels, talk, use slash commands.
    EVERYONE_DEFAULT = (
        CREATE_INSTANT_INVITE
        | VIEW_CHANNEL
        | SEND_MESSAGES
        | EMBED_LINKS
        | ATTACH_FILES
        | READ_MESSAGE_HISTORY
        | USE_APPLICATION_COMMANDS
    )
    # A bot invited with what an invite tracker needs (Manage Guild for invite uses, Manage Channels for
    # INVITE_CREATE / INVITE_DELETE, sending and attaching in the join-log channel).
    INVITE_TRACKER_BOT = EVERYONE_DEFAULT | MANAGE_GUILD | MANAGE_CHANNELS | VIEW_AUDIT_LOG


class Intent:
    GUILDS = 1 << 0
    GUILD_MEMBERS = 1 << 1  # privileged
    GUILD_MODERATION = 1 << 2  # GUILD_AUDIT_LOG_ENTRY_CREATE, bans
    GUILD_INVITES = 1 << 6
    GUILD_PRESENCES = 1 << 8  # privileged
    GUILD_MESSAGES = 1 << 9
    MESSAGE_CONTENT = 1 << 15  # privileged
    PRIVILEGED = GUILD_MEMBERS | GUILD_PRESENCES | MESSAGE_CONTENT


class Op:
    """Gateway opcodes."""

    DISPATCH = 0
    HEARTBEAT = 1
    IDENTIFY = 2
    PRESENCE_UPDATE = 3
    VOICE_STATE_UPDATE = 4
    RESUME = 6
    RECONNECT = 7
    REQUEST_GUILD_MEMBERS = 8
    INVALID_SESSION = 9
    HELLO = 10
    HEARTBEAT_ACK = 11


class Close:
    """Gateway close codes the simulator sends."""

    UNKNOWN_ERROR = 4000  # the client may resume
    UNKNOWN_OPCODE = 4001
    DECODE_ERROR = 4002
    NOT_AUTHENTICATED = 4003
    AUTHENTICATION_FAILED = 4004  # not recoverable: the client stops
    ALREADY_AUTHENTICATED = 4005
    INVALID_SEQ = 4007  # the client reconnects without resuming
    DISALLOWED_INTENTS = 4014  # not recoverable


class MemberFlag:
    DID_REJOIN = 1 << 0
    COMPLETED_ONBOARDING = 1 << 1


class MessageFlag:
    EPHEMERAL = 1 << 6


class InteractionType:
    PING = 1
    APPLICATION_COMMAND = 2
    MESSAGE_COMPONENT = 3


class CallbackType:
    CHANNEL_MESSAGE_WITH_SOURCE = 4
    DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE = 5
    DEFERRED_UPDATE_MESSAGE = 6
    UPDATE_MESSAGE = 7


class OptionType:
    SUB_COMMAND = 1
    SUB_COMMAND_GROUP = 2
    STRING = 3
    INTEGER = 4
    BOOLEAN = 5
    USER = 6
    CHANNEL = 7
    ROLE = 8
    MENTIONABLE = 9
    NUMBER = 10


class ChannelType:
    GUILD_TEXT = 0


# Discord's JSON error codes used in answers.
class ErrorCode:
    GENERAL = 0
    UNKNOWN_CHANNEL = 10003
    UNKNOWN_GUILD = 10004
    UNKNOWN_INVITE = 10006
    UNKNOWN_MEMBER = 10007
    UNKNOWN_MESSAGE = 10008
    UNKNOWN_WEBHOOK = 10015
    UNKNOWN_USER = 10013
    UNKNOWN_APPLICATION_COMMAND = 10063
    UNKNOWN_INTERACTION = 10062
    INTERACTION_ALREADY_ACKNOWLEDGED = 40060
    MISSING_ACCESS = 50001
    MISSING_PERMISSIONS = 50013
    INVALID_FORM_BODY = 50035
