"""A stand-in for the ledger façade (`service.ledger.Ledger`) for the command tests: the real projection
(`service.projection`, SQLite in memory) fed directly with records, so the commands format real query
results; what it leaves out is the WAL, the applier and their waiting, which the commands do not see.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import apsw
import attrs

from service import projection
from service.projection.queries import InviteComparison, JoinPage, UserLookup
from service.records import (
    AttributionKind,
    JoinFlag,
    JoinRecorded,
    Record,
    StaffIbRemoved,
    StaffIbSet,
    UserErased,
)
from service.settle import Settled, SettleRequest, settlement

GUILD = "111222333444555666"
SEGMENT = "00000000000000000001.wal"


@attrs.frozen
class FakeExport:
    path: Path
    rows: int
    size: int


@attrs.frozen
class FakeTarget:
    shipped_lsn: int
    backlog_segments: int
    backlog_bytes: int
    oldest_unshipped_age_s: float | None
    last_success_at: datetime | None
    last_error: str | None


@attrs.frozen
class FakeStatus:
    durable_lsn: int
    applied_lsn: int
    segments: int
    targets: Mapping[str, FakeTarget]
    last_recovery: str | None


@attrs.define(eq=False)
class ProjectionLedger:
    directory: Path = attrs.field(factory=lambda: Path(tempfile.mkdtemp(prefix="fake-ledger-")))
    conn: apsw.Connection = attrs.field(factory=lambda: projection.open_database(":memory:"))
    lsn: int = 0
    broken: set[str] = attrs.field(factory=set)  # methods that raise, to test the apology
    exports: list[Path] = attrs.field(factory=list)
    calls: list[tuple[str, tuple[Any, ...]]] = attrs.field(factory=list)

    def append(self, *records: Record) -> list[int]:
        entries = [(self.lsn + i + 1, record) for i, record in enumerate(records)]
        self.lsn += len(records)
        projection.apply_batch(self.conn, entries)
        return [lsn for lsn, _ in entries]

    def _enter(self, name: str, *args: Any) -> None:
        self.calls.append((name, args))
        if name in self.broken:
            raise RuntimeError(f"{name} is broken for this test")

    async def lookup_user(self, guild_id: str, user_id: str) -> UserLookup:
        self._enter("lookup_user", guild_id, user_id)
        return projection.lookup_user(self.conn, guild_id, user_id, segment_of=lambda _lsn: SEGMENT)

    async def join_logs(self, guild_id: str, **filters: Any) -> JoinPage:
        self._enter("join_logs", guild_id, filters)
        return projection.join_logs(self.conn, guild_id, **filters)

    async def invite_comparison(
        self, guild_id: str, discord_uses: Mapping[str, int]
    ) -> Sequence[InviteComparison]:
        self._enter("invite_comparison", guild_id, dict(discord_uses))
        return projection.invite_comparison(self.conn, guild_id, discord_uses)

    async def staff_profile(self, guild_id: str, staff_id: str | None = None) -> Any:
        self._enter("staff_profile", guild_id, staff_id)
        return projection.staff_profile(self.conn, guild_id, staff_id)

    async def set_staff_ib(
        self, guild_id: str, staff_id: str, staff_username: str, ib_link: str, ib_code: str, set_by: str
    ) -> int:
        self._enter("set_staff_ib", guild_id, staff_id)
        record = StaffIbSet(datetime.now(UTC), guild_id, staff_id, staff_username, ib_link, ib_code, set_by)
        return self.append(record)[0]

    async def remove_staff_ib(self, guild_id: str, staff_id: str, removed_by: str) -> int | None:
        self._enter("remove_staff_ib", guild_id, staff_id)
        if projection.staff_profile(self.conn, guild_id, staff_id) is None:
            return None
        return self.append(StaffIbRemoved(datetime.now(UTC), guild_id, staff_id, removed_by))[0]

    async def erase_user(self, guild_id: str, user_id: str, requested_by: str) -> int:
        self._enter("erase_user", guild_id, user_id)
        return self.append(UserErased(datetime.now(UTC), guild_id, user_id, requested_by))[0]

    async def settle_join(self, request: SettleRequest) -> Settled:
        self._enter("settle_join", request)
        found = projection.lookup_user(self.conn, request.guild_id, request.user_id)
        owner = projection.invite_owner(self.conn, request.guild_id, request.invite_code)
        record, settled = settlement(request, found, owner, datetime.now(UTC))
        return Settled(self.append(record)[0], record, settled)

    async def export(
        self,
        guild_id: str | None,
        fmt: str = "csv",
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> FakeExport:
        self._enter("export", guild_id, fmt, since, until)
        path = self.directory / f"export-{len(self.exports)}.{fmt}"
        self.exports.append(path)
        write = projection.export_csv if fmt == "csv" else projection.export_jsonl
        with path.open("wb") as out:
            for chunk in write(self.conn, guild_id=guild_id, since=since, until=until):
                out.write(chunk)
        rows = projection.join_logs(self.conn, guild_id or GUILD, since=since, until=until, limit=1000)
        return FakeExport(path, len(rows.entries), path.stat().st_size)

    async def status(self) -> FakeStatus:
        self._enter("status")
        target = FakeTarget(self.lsn, 1, 4096, 12.0, datetime(2025, 10, 31, tzinfo=UTC), "timeout")
        return FakeStatus(self.lsn, self.lsn, 2, {"dir:///backups": target}, "recovered 12 records")


def join(
    user_id: str,
    username: str,
    *,
    code: str | None = "abc123XYZ",
    staff: tuple[str, str] | None = ("987654321098765432", "TravisP"),
    kind: AttributionKind = AttributionKind.EXACT,
    at: datetime | None = None,
    candidates: tuple[str, ...] = (),
    flags: tuple[JoinFlag, ...] = (),
    uses: tuple[int, int] | None = (5, 6),
    guild_id: str = GUILD,
) -> JoinRecorded:
    return JoinRecorded(
        timestamp=at or datetime(2025, 10, 31, 14, 30, 45, tzinfo=UTC),
        guild_id=guild_id,
        guild_name="PipVault",
        user_id=user_id,
        username=username,
        display_name=username.replace("_", " ").title(),
        kind=kind,
        invite_code=code,
        staff_id=None if staff is None else staff[0],
        staff_username=None if staff is None else staff[1],
        uses_before=None if uses is None else uses[0],
        uses_after=None if uses is None else uses[1],
        candidates=candidates,
        flags=flags,
        account_created_at=datetime(2024, 1, 1, tzinfo=UTC),
        decided_at=(at or datetime(2025, 10, 31, 14, 30, 45, tzinfo=UTC)) + timedelta(seconds=1),
    )
