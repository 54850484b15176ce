"""What the slash commands need from the rest of the service, as protocols: the ledger façade
(`service.ledger.Ledger`) and the Discord side (`service.discord_adapter.DiscordAdapter`).

The commands format answers and files; they never read files or SQL themselves (DESIGN.md, Layout). The
query results are the projection's frozen classes (`service.projection.queries`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from interactions import Client

from service.gateway import InviteList
from service.projection.queries import InviteComparison, JoinPage, StaffProfile, UserLookup
from service.settle import Settled, SettleRequest


class ExportResult(Protocol):
    """An export written to a temporary file, which the caller removes."""

    @property
    def path(self) -> Path: ...
    @property
    def rows(self) -> int: ...
    @property
    def size(self) -> int: ...


class BackupTarget(Protocol):
    @property
    def shipped_lsn(self) -> int: ...
    @property
    def backlog_segments(self) -> int: ...
    @property
    def backlog_bytes(self) -> int: ...
    @property
    def oldest_unshipped_age_s(self) -> float | None: ...
    @property
    def last_success_at(self) -> datetime | None: ...
    @property
    def last_error(self) -> str | None: ...


class Status(Protocol):
    @property
    def durable_lsn(self) -> int: ...
    @property
    def applied_lsn(self) -> int: ...
    @property
    def segments(self) -> int: ...
    @property
    def targets(self) -> Mapping[str, Any]: ...  # url -> BackupTarget
    @property
    def last_recovery(self) -> str | None: ...


class LedgerPort(Protocol):
    """The ledger's read side waits for its own writes (read-your-writes); the write side returns once the
    record is durable."""

    async def lookup_user(self, guild_id: str, user_id: str) -> UserLookup | None: ...

    async def join_logs(self, guild_id: str, **filters: Any) -> JoinPage: ...

    async def invite_comparison(
        self, guild_id: str, discord_uses: Mapping[str, int]
    ) -> Sequence[InviteComparison]: ...

    async def staff_profile(self, guild_id: str, staff_id: str | None = None) -> Any:
        """One `StaffProfile` or None with `staff_id`; all of the guild's (a sequence) without."""
        ...

    async def set_staff_ib(
        self, guild_id: str, staff_id: str, staff_username: str, ib_link: str, ib_code: str, set_by: str
    ) -> int: ...

    async def remove_staff_ib(self, guild_id: str, staff_id: str, removed_by: str) -> int | None: ...

    async def erase_user(self, guild_id: str, user_id: str, requested_by: str) -> int: ...

    async def settle_join(self, request: SettleRequest) -> Settled:
        """Raises `service.settle.SettleRefused` when the rules do not allow it."""
        ...

    async def export(
        self,
        guild_id: str | None,
        fmt: str = "csv",
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> ExportResult: ...

    async def status(self) -> Status: ...


class DiscordPort(Protocol):
    async def fetch_invites(self, guild_id: str) -> InviteList: ...

    async def send_message(self, channel_id: str, content: str) -> None: ...


class CommandHost(DiscordPort, Protocol):
    """The adapter: it builds the clients, and calls each setup on every one before it starts."""

    def add_client_setup(self, setup: Callable[[Client], None]) -> None: ...


__all__ = [
    "BackupTarget",
    "CommandHost",
    "DiscordPort",
    "ExportResult",
    "LedgerPort",
    "StaffProfile",
    "Status",
]
