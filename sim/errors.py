"""Errors the simulator answers with."""

from __future__ import annotations

from typing import Any

from sim.discord_constants import ErrorCode


class DiscordAPIError(Exception):
    """An error answer as Discord gives it: HTTP status plus JSON `{"message", "code"}`."""

    def __init__(self, status: int, message: str, code: int = ErrorCode.GENERAL) -> None:
        super().__init__(f"{status} {message} (code {code})")
        self.status = status
        self.message = message
        self.code = code

    def body(self) -> dict[str, Any]:
        return {"message": self.message, "code": self.code}
