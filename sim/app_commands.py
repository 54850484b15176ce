"""The bot's application commands as Discord stores them: per scope (a guild id, or None for global), each
echoed back with an `id`, `application_id` and `version` (interactions.py needs the ids to route
invocations). Overwriting keeps a command's id while its name and type stay the same, as Discord does."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sim.discord_constants import ErrorCode
from sim.errors import DiscordAPIError


class CommandRegistry:
    def __init__(self, application_id: int, new_id: Callable[[], int]) -> None:
        self.application_id = application_id
        self._new_id = new_id
        self.by_scope: dict[int | None, list[dict[str, Any]]] = {}

    def in_scope(self, scope: int | None) -> list[dict[str, Any]]:
        return list(self.by_scope.get(scope, []))

    def put(self, scope: int | None, body: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Bulk overwrite: a command keeps its id when its name and type stay the same, as on Discord."""
        if not isinstance(body, list):
            raise DiscordAPIError(400, "Invalid Form Body", ErrorCode.INVALID_FORM_BODY)
        existing = {(c["name"], c.get("type", 1)): c for c in self.by_scope.get(scope, [])}
        stored = []
        for command in body:
            if not isinstance(command, dict) or not command.get("name"):
                raise DiscordAPIError(400, "Invalid Form Body", ErrorCode.INVALID_FORM_BODY)
            previous = existing.get((command["name"], command.get("type", 1)))
            stored.append(self._stored(scope, command, previous["id"] if previous else None))
        self.by_scope[scope] = stored
        return stored

    def upsert(self, scope: int | None, command: dict[str, Any]) -> dict[str, Any]:
        commands = self.by_scope.setdefault(scope, [])
        for index, old in enumerate(commands):
            if old["name"] == command.get("name") and old.get("type", 1) == command.get("type", 1):
                commands[index] = self._stored(scope, command, old["id"])
                return commands[index]
        commands.append(self._stored(scope, command, None))
        return commands[-1]

    def delete(self, scope: int | None, command_id: str) -> None:
        commands = self.by_scope.get(scope, [])
        remaining = [c for c in commands if c["id"] != str(command_id)]
        if len(remaining) == len(commands):
            raise DiscordAPIError(404, "Unknown application command", ErrorCode.UNKNOWN_APPLICATION_COMMAND)
        self.by_scope[scope] = remaining

    def _stored(self, scope: int | None, command: dict[str, Any], command_id: str | None) -> dict[str, Any]:
        stored = {
            "type": 1,
            "description": "",
            "default_member_permissions": None,
            "nsfw": False,
            **command,
            "id": command_id or str(self._new_id()),
            "application_id": str(self.application_id),
            "version": str(self._new_id()),
        }
        if scope is not None:
            stored["guild_id"] = str(scope)
        return stored

    def find(self, guild_id: int | None, name: str) -> dict[str, Any]:
        """The command a user in `guild_id` would see under `name`: guild commands first, then global."""
        for scope in ([guild_id] if guild_id is not None else []) + [None]:
            for command in self.by_scope.get(scope, []):
                if command["name"] == name and command.get("type", 1) == 1:
                    return command
        known = sorted({c["name"] for cmds in self.by_scope.values() for c in cmds})
        raise KeyError(f"no slash command {name!r} is registered (registered: {known})")
