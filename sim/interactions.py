"""Slash-command and button interactions: what the simulator sends the bot, and the bot's answers.

`InteractionDesk.invoke` / `click` build INTERACTION_CREATE payloads (options typed from the registered
command, USER options with `resolved` users and members, the member's permissions, app_permissions). The REST
layer feeds the bot's callbacks, follow-ups, edits and deletes back in, and the desk records each as an
`Answer` and keeps the resulting messages (the original response and follow-ups) as the user would see them.
No I/O here.
"""

from __future__ import annotations

import secrets
import time
from datetime import datetime
from typing import Any

import attrs

from sim import payloads
from sim.discord_constants import CallbackType, ErrorCode, InteractionType, MessageFlag, OptionType
from sim.errors import DiscordAPIError
from sim.model import GatewayEvent, SimMember, SimMessage, StoredFile
from sim.world import Ref, SimWorld, ref_id

#: Message flag Discord sets on a deferred response's "is thinking…" placeholder.
LOADING_FLAG = 1 << 7
#: Message types of an interaction's original response.
CHAT_INPUT_COMMAND_MESSAGE = 20
DEFAULT_MESSAGE = 0


@attrs.define(eq=False)
class Answer:
    """One thing the bot sent in answer to an interaction, in arrival order."""

    kind: str  # "callback", "followup", "edit" or "delete"
    body: dict[str, Any]  # the JSON the bot sent (for a callback: {"type", "data"})
    files: list[StoredFile]
    message: SimMessage | None
    at: datetime

    @property
    def callback_type(self) -> int | None:
        return int(self.body["type"]) if self.kind == "callback" else None

    @property
    def data(self) -> dict[str, Any]:
        """The message fields: a callback's `data`, or the follow-up / edit body itself."""
        if self.kind == "callback":
            return self.body.get("data") or {}
        return self.body

    @property
    def is_deferral(self) -> bool:
        return self.callback_type in (
            CallbackType.DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE,
            CallbackType.DEFERRED_UPDATE_MESSAGE,
        )

    @property
    def ephemeral(self) -> bool:
        if self.message is not None:
            return self.message.ephemeral
        return bool(int(self.data.get("flags") or 0) & MessageFlag.EPHEMERAL)

    @property
    def content(self) -> str:
        return self.data.get("content") or ""

    @property
    def embeds(self) -> list[dict[str, Any]]:
        return self.data.get("embeds") or []


@attrs.define(eq=False)
class SimInteraction:
    id: int
    token: str
    type: int
    guild_id: int
    channel_id: int
    user_id: int
    payload: dict[str, Any]
    created_monotonic: float
    command_name: str | None = None
    custom_id: str | None = None
    #: For a button click: the message whose button was pressed.
    source_message: SimMessage | None = None
    answers: list[Answer] = attrs.field(factory=list)
    #: The "@original" response message (for a component deferred/updated in place: the source message).
    original: SimMessage | None = None
    followups: list[SimMessage] = attrs.field(factory=list)

    @property
    def acknowledged(self) -> bool:
        return any(a.kind == "callback" for a in self.answers)

    @property
    def deferred(self) -> bool:
        return any(a.is_deferral for a in self.answers)

    @property
    def messages(self) -> list[SimMessage]:
        """What the user sees now: the original response, then follow-ups (deleted ones left out)."""
        shown = ([self.original] if self.original else []) + self.followups
        return [m for m in shown if not m.deleted]


class InteractionDesk:
    def __init__(
        self, world: SimWorld, *, ack_timeout_s: float | None = 3.0, token_lifetime_s: float = 15 * 60
    ) -> None:
        self.world = world
        #: Discord forgets an interaction not acknowledged within 3 s; None turns that check off.
        self.ack_timeout_s = ack_timeout_s
        self.token_lifetime_s = token_lifetime_s
        self.by_id: dict[int, SimInteraction] = {}
        self.by_token: dict[str, SimInteraction] = {}

    # -- what users do ------------------------------------------------------------------------------

    def invoke(
        self,
        guild_ref: Ref,
        user_ref: Ref,
        command: str,
        options: dict[str, Any] | None = None,
        *,
        permissions: int | None = None,
        channel_ref: Ref = None,
        locale: str = "en-US",
    ) -> tuple[SimInteraction, list[GatewayEvent]]:
        """A member runs `/command` ("name", or "name sub" / "name group sub" for subcommands)."""
        guild = self.world.guild(guild_ref)
        member = self._member(guild.id, user_ref)
        top, *path = command.split()
        definition = self.world.commands.find(guild.id, top)
        resolved: dict[str, dict[str, Any]] = {}
        given = {
            name: value for name, value in (options or {}).items() if value is not None
        }  # None: left out
        leaf_options = self._typed_options(definition, path, given, guild.id, resolved)
        data: dict[str, Any] = {
            "id": definition["id"],
            "name": top,
            "type": 1,
            "options": leaf_options,
        }
        if "guild_id" in definition:
            data["guild_id"] = definition["guild_id"]
        if resolved:
            data["resolved"] = resolved
        return self._create(
            InteractionType.APPLICATION_COMMAND,
            guild.id,
            member,
            data,
            permissions,
            channel_ref,
            locale,
            command_name=command,
        )

    def click(
        self, message: SimMessage, custom_id: str, user_ref: Ref, *, values: list[str] | None = None
    ) -> tuple[SimInteraction, list[GatewayEvent]]:
        """A member presses a button (or picks from a select menu) on one of the bot's messages."""
        if message.guild_id is None:
            raise ValueError("clicks in direct messages are not simulated")
        component = message.component(custom_id)
        member = self._member(message.guild_id, user_ref)
        data: dict[str, Any] = {"custom_id": custom_id, "component_type": component.get("type", 2)}
        if values is not None:
            data["values"] = values
        interaction, events = self._create(
            InteractionType.MESSAGE_COMPONENT,
            message.guild_id,
            member,
            data,
            None,
            message.channel_id,
            "en-US",
            custom_id=custom_id,
            source_message=message,
        )
        interaction.payload["message"] = self.world.message_payload(message)
        return interaction, events

    def _member(self, guild_id: int, user_ref: Ref) -> SimMember:
        member = self.world.guild(guild_id).members.get(ref_id(user_ref))
        if member is None:
            raise ValueError(
                f"user {ref_id(user_ref)} is not a member of guild {guild_id}; only members can interact"
            )
        return member

    def _create(
        self,
        kind: int,
        guild_id: int,
        member: SimMember,
        data: dict[str, Any],
        permissions: int | None,
        channel_ref: Ref,
        locale: str,
        **fields: Any,
    ) -> tuple[SimInteraction, list[GatewayEvent]]:
        guild = self.world.guild(guild_id)
        channel = self.world.channel(channel_ref) if channel_ref is not None else None
        channel = channel or self.world.channel(guild.system_channel_id)
        if permissions is None:
            permissions = guild.member_permissions(member)
        interaction_id = self.world.new_id()
        token = f"sim.{interaction_id}.{secrets.token_urlsafe(24)}"
        payload: dict[str, Any] = {
            "id": str(interaction_id),
            "application_id": str(self.world.application_id),
            "type": kind,
            "token": token,
            "version": 1,
            "data": data,
            "guild_id": str(guild.id),
            "channel_id": str(channel.id),
            "channel": payloads.channel(channel) | {"permissions": str(permissions)},
            "member": payloads.member(member) | {"permissions": str(permissions)},
            "app_permissions": str(self.world.guild(guild.id).bot_permissions),
            "locale": locale,
            "guild_locale": "en-US",
            "entitlements": [],
            "authorizing_integration_owners": {"0": str(guild.id)},
            "context": 0,
        }
        interaction = SimInteraction(
            id=interaction_id,
            token=token,
            type=kind,
            guild_id=guild.id,
            channel_id=channel.id,
            user_id=member.id,
            payload=payload,
            created_monotonic=time.monotonic(),
            **fields,
        )
        self.by_id[interaction.id] = interaction
        self.by_token[token] = interaction
        # INTERACTION_CREATE needs no intent.
        return interaction, [GatewayEvent("INTERACTION_CREATE", payload, guild_id=guild.id)]

    def _typed_options(
        self,
        definition: dict[str, Any],
        path: list[str],
        given: dict[str, Any],
        guild_id: int,
        resolved: dict[str, dict[str, Any]],
    ) -> list[dict[str, Any]]:
        """Turn {name: value} into Discord's typed option list, walking into subcommands along `path`."""
        declared = definition.get("options") or []
        if path:
            sub = next((o for o in declared if o["name"] == path[0]), None)
            if sub is None or sub["type"] not in (OptionType.SUB_COMMAND, OptionType.SUB_COMMAND_GROUP):
                raise KeyError(f"/{definition['name']} has no subcommand {path[0]!r}")
            inner = self._typed_options(sub, path[1:], given, guild_id, resolved)
            return [{"name": sub["name"], "type": sub["type"], "options": inner}]
        by_name = {o["name"]: o for o in declared}
        unknown = set(given) - set(by_name)
        if unknown:
            raise KeyError(
                f"/{definition['name']} has no options {sorted(unknown)} (it has {sorted(by_name)})"
            )
        missing = [o["name"] for o in declared if o.get("required") and o["name"] not in given]
        if missing:
            raise ValueError(f"/{definition['name']} needs options {missing}")
        return [
            {
                "name": name,
                "type": by_name[name]["type"],
                "value": self._option_value(by_name[name], v, guild_id, resolved),
            }
            for name, v in given.items()
        ]

    def _option_value(
        self, declared: dict[str, Any], value: Any, guild_id: int, resolved: dict[str, Any]
    ) -> Any:
        kind = declared["type"]
        if kind in (OptionType.USER, OptionType.MENTIONABLE) and ref_id(value) in self.world.users:
            user = self.world.user(value)
            resolved.setdefault("users", {})[str(user.id)] = payloads.user(user)
            guild = self.world.guild(guild_id)
            if member := guild.members.get(user.id):
                # Resolved members leave out `user` (it is in `users`) and carry their permissions; someone
                # who left is only a user, which the library then hands the bot as a User, not a Member.
                entry = payloads.member(member, with_user=False) | {
                    "permissions": str(guild.member_permissions(member))
                }
                resolved.setdefault("members", {})[str(user.id)] = entry
            return str(user.id)
        if kind in (OptionType.ROLE, OptionType.MENTIONABLE):
            role = self.world.guild(guild_id).roles[ref_id(value)]
            resolved.setdefault("roles", {})[str(role.id)] = payloads.role(role)
            return str(role.id)
        if kind == OptionType.CHANNEL:
            channel = self.world.channel(value)
            resolved.setdefault("channels", {})[str(channel.id)] = payloads.partial_channel(channel) | {
                "permissions": str(self.world.guild(guild_id).bot_permissions)
            }
            return str(channel.id)
        if kind == OptionType.USER:
            raise KeyError(f"option {declared['name']!r}: no user {value!r}")
        converters = {
            OptionType.STRING: str,
            OptionType.INTEGER: int,
            OptionType.NUMBER: float,
            OptionType.BOOLEAN: bool,
        }
        return converters.get(kind, lambda v: v)(value)

    # -- what the bot does (REST) -------------------------------------------------------------------

    def callback(
        self, interaction_id: int, token: str, body: dict[str, Any], files: list[StoredFile]
    ) -> SimInteraction:
        """POST /interactions/{id}/{token}/callback."""
        interaction = self.by_id.get(interaction_id)
        if interaction is None or interaction.token != token:
            raise DiscordAPIError(404, "Unknown interaction", ErrorCode.UNKNOWN_INTERACTION)
        if interaction.acknowledged:
            raise DiscordAPIError(
                400, "Interaction has already been acknowledged.", ErrorCode.INTERACTION_ALREADY_ACKNOWLEDGED
            )
        age = time.monotonic() - interaction.created_monotonic
        if self.ack_timeout_s is not None and age > self.ack_timeout_s:
            raise DiscordAPIError(404, "Unknown interaction", ErrorCode.UNKNOWN_INTERACTION)
        kind = int(body.get("type", 0))
        data = body.get("data") or {}
        message: SimMessage | None = None
        if kind in (
            CallbackType.CHANNEL_MESSAGE_WITH_SOURCE,
            CallbackType.DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE,
        ):
            flags = int(data.get("flags") or 0) & MessageFlag.EPHEMERAL
            if kind == CallbackType.DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE:
                flags |= LOADING_FLAG
            message = self._new_response_message(interaction, flags)
            if kind == CallbackType.CHANNEL_MESSAGE_WITH_SOURCE:
                self.world.apply_message_body(
                    message, {k: v for k, v in data.items() if k != "flags"}, files, editing=False
                )
            interaction.original = message
        elif kind in (CallbackType.DEFERRED_UPDATE_MESSAGE, CallbackType.UPDATE_MESSAGE):
            if interaction.source_message is None:
                raise DiscordAPIError(
                    400, "Interaction callback type only valid for component interactions", 50035
                )
            message = interaction.original = interaction.source_message
            if kind == CallbackType.UPDATE_MESSAGE:
                self.world.apply_message_body(message, data, files, editing=True)
        elif kind not in (8, 9, 10):  # autocomplete result, modal, premium required: recorded only
            raise DiscordAPIError(400, "Invalid Form Body", ErrorCode.INVALID_FORM_BODY)
        interaction.answers.append(Answer("callback", body, files, message, self.world.now()))
        return interaction

    def _new_response_message(self, interaction: SimInteraction, flags: int) -> SimMessage:
        message_type = (
            CHAT_INPUT_COMMAND_MESSAGE
            if interaction.type == InteractionType.APPLICATION_COMMAND
            else DEFAULT_MESSAGE
        )
        return self.world.new_message(
            interaction.channel_id,
            interaction.guild_id,
            self.world.bot_user,
            flags=flags,
            type=message_type,
            webhook_id=self.world.application_id,
            application_id=self.world.application_id,
            interaction_id=interaction.id,
        )

    def _by_webhook(self, application_id: int, token: str) -> SimInteraction:
        interaction = self.by_token.get(token)
        if application_id != self.world.application_id or interaction is None:
            raise DiscordAPIError(404, "Unknown Webhook", ErrorCode.UNKNOWN_WEBHOOK)
        if time.monotonic() - interaction.created_monotonic > self.token_lifetime_s:
            raise DiscordAPIError(401, "Invalid Webhook Token", 50027)
        return interaction

    def followup(
        self, application_id: int, token: str, body: dict[str, Any], files: list[StoredFile]
    ) -> tuple[SimInteraction, SimMessage]:
        """POST /webhooks/{application_id}/{token}: a follow-up message. The first follow-up after a deferral
        fills in the "is thinking…" message, as Discord does."""
        interaction = self._by_webhook(application_id, token)
        if not interaction.acknowledged:
            raise DiscordAPIError(404, "Unknown Webhook", ErrorCode.UNKNOWN_WEBHOOK)
        original = interaction.original
        if original is not None and original.flags & LOADING_FLAG:
            original.flags &= ~LOADING_FLAG
            self.world.apply_message_body(original, _without_flags(body), files, editing=False)
            message = original
        else:
            flags = int(body.get("flags") or 0) & MessageFlag.EPHEMERAL
            message = self._new_response_message(interaction, flags)
            message.type = DEFAULT_MESSAGE
            self.world.apply_message_body(message, _without_flags(body), files, editing=False)
            interaction.followups.append(message)
        interaction.answers.append(Answer("followup", body, files, message, self.world.now()))
        return interaction, message

    def _message_of(self, interaction: SimInteraction, message_id: str) -> SimMessage:
        if message_id == "@original":
            found = interaction.original
        else:
            found = next((m for m in interaction.followups if str(m.id) == message_id), None)
            if (
                found is None
                and interaction.original is not None
                and str(interaction.original.id) == message_id
            ):
                found = interaction.original
        if found is None or found.deleted:
            raise DiscordAPIError(404, "Unknown Message", ErrorCode.UNKNOWN_MESSAGE)
        return found

    def edit(
        self, application_id: int, token: str, message_id: str, body: dict[str, Any], files: list[StoredFile]
    ) -> tuple[SimInteraction, SimMessage]:
        """PATCH /webhooks/{application_id}/{token}/messages/{@original | message_id}."""
        interaction = self._by_webhook(application_id, token)
        message = self._message_of(interaction, message_id)
        message.flags &= ~LOADING_FLAG
        self.world.apply_message_body(message, _without_flags(body), files, editing=True)
        interaction.answers.append(Answer("edit", body, files, message, self.world.now()))
        return interaction, message

    def get_message(self, application_id: int, token: str, message_id: str) -> SimMessage:
        return self._message_of(self._by_webhook(application_id, token), message_id)

    def delete_message(self, application_id: int, token: str, message_id: str) -> SimInteraction:
        interaction = self._by_webhook(application_id, token)
        message = self._message_of(interaction, message_id)
        message.deleted = True
        interaction.answers.append(Answer("delete", {}, [], message, self.world.now()))
        return interaction


def _without_flags(body: dict[str, Any]) -> dict[str, Any]:
    """Ephemerality is fixed when a message is created; later bodies cannot change it."""
    return {k: v for k, v in body.items() if k != "flags"}
