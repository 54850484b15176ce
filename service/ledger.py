"""The ledger: the back half of the service, everything behind the attribution actor.

    WAL writer ──durable──► applier ──applied──► queries (read-your-writes)
        └──sealed──► backup shipper

`Ledger.run` starts the actors in dependency order (`await tg.start(...)`, each calling started() once its
files are open). The write side (`append`, `append_batch`, staff IB profiles, erasure) goes through the log
like every change; the read side waits until the projection has applied everything durable at the moment
the question was asked, so a command issued right after a join sees it.
"""

from __future__ import annotations

import bisect
import logging
import os
import tempfile
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import attrs
from anyio.abc import TaskStatus

from service import convert
from service.applier import Applier
from service.attribution_actor import Durable
from service.backup.shipper import BackupShipper, TargetStatus
from service.config import Config
from service.metrics import ServiceMetrics
from service.queries import LedgerQueries
from service.records import (
    JoinRecorded,
    Record,
    StaffIbRemoved,
    StaffIbSet,
    UserErased,
)
from service.settle import Settled, SettleRequest, settlement
from wal import RecoveryReport, WalWriteError, WalWriter
from wal.segment import parse_segment_name

log = logging.getLogger(__name__)


def _now() -> datetime:
    return datetime.now(UTC)


def _target_field(shipper: BackupShipper, url: str, field: str) -> float | None:
    value = getattr(shipper.status()[url], field)
    return None if value is None else float(value)


@attrs.frozen
class LedgerStatus:
    """The checkpoint view: what is durable, applied and shipped, for /ledger_status and the CLI."""

    durable_lsn: int
    applied_lsn: int
    segments: int
    sealed_lsn: int
    targets: Mapping[str, TargetStatus]
    last_recovery: str | None
    wal_dir: str
    db_path: str

    @property
    def applied_lag(self) -> int:
        return self.durable_lsn - self.applied_lsn


@attrs.frozen
class ExportFile:
    path: Path
    rows: int
    size: int
    fmt: str


@attrs.define(eq=False)
class Ledger:
    config: Config
    writer: WalWriter
    applier: Applier
    queries: LedgerQueries
    shipper: BackupShipper | None
    metrics: ServiceMetrics
    recovery_line: str | None = None
    #: Where a settlement by hand is announced once durable, as the joins are (the join-log channel);
    #: `Service.build` points it at the attribution actor's publisher.
    announce: Callable[[Durable], None] | None = None
    _segment_firsts: list[int] = attrs.field(factory=list)
    _segment_names: list[str] = attrs.field(factory=list)

    @classmethod
    def from_config(
        cls,
        config: Config,
        *,
        metrics: ServiceMetrics | None = None,
        opened_log: RecoveryReport | None = None,
    ) -> Ledger:
        """`opened_log`: the log as start-up recovery opened it, so the writer need not verify it again."""
        metrics = metrics or ServiceMetrics.create()
        config.wal_dir.mkdir(parents=True, exist_ok=True)
        writer = WalWriter(
            config.wal_dir,
            segment_bytes=config.wal.segment_bytes,
            batch_bytes=config.wal.batch_bytes,
            opened=opened_log,
        )
        applier = Applier(config.wal_dir, config.db_path, writer.durable)
        queries = LedgerQueries(config.db_path, applier.applied)
        shipper = (
            BackupShipper.from_config(
                config, watermark=writer.sealed, active_durable_prefix=writer.durable_prefix
            )
            if config.backup_targets
            else None
        )
        ledger = cls(config, writer, applier, queries, shipper, metrics)
        queries.segment_of = ledger.segment_of
        ledger._wire_metrics()
        return ledger

    def _wire_metrics(self) -> None:
        m = self.metrics
        m.durable_lsn.set_function(lambda: self.writer.durable.value)
        m.applied_lsn.set_function(lambda: self.applier.applied.value)
        if self.shipper is not None:
            for url in self.config.backup_targets:
                for gauge, field in (
                    (m.shipped_lsn, "shipped_lsn"),
                    (m.backup_backlog_segments, "backlog_segments"),
                    (m.backup_backlog_bytes, "backlog_bytes"),
                    (m.backup_oldest_unshipped_age_seconds, "oldest_unshipped_age_s"),
                ):
                    gauge.set_function(partial(_target_field, self.shipper, url, field), target=url)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with anyio.create_task_group() as tg:
            await tg.start(self.writer.run)
            await tg.start(self.applier.run)
            if self.shipper is not None:
                await tg.start(self.shipper.run)
            await anyio.to_thread.run_sync(self._refresh_segments)
            task_status.started()
            try:
                await anyio.sleep_forever()
            finally:
                with anyio.CancelScope(shield=True):
                    await self.queries.aclose()

    # --- write side -----------------------------------------------------------------------------------

    async def append(self, record: Record) -> int:
        (lsn,) = await self.append_batch([record])
        return lsn

    async def append_batch(self, records: Sequence[Record]) -> list[int]:
        """Append records in this order; returns their LSNs once all are durable."""
        encoded = [convert.encode(r) for r in records]
        try:
            lsns = await self.writer.append_many(encoded)
        except WalWriteError as exc:
            self._count_joins(records, getattr(exc, "durable_lsns", None) or [])
            raise
        self._count_joins(records, lsns)
        return lsns

    def _count_joins(self, records: Sequence[Record], lsns: Sequence[int]) -> None:
        # Tallied per kind first: the counter checks its labels on every call, ~2 µs, once per join.
        kinds: Counter[str] = Counter()
        for record, lsn in zip(records, lsns, strict=False):
            if lsn and isinstance(record, JoinRecorded):
                kinds[record.kind] += 1
        for kind, count in kinds.items():
            self.metrics.joins_total.inc(count, kind=kind)

    async def set_staff_ib(
        self, guild_id: str, staff_id: str, staff_username: str, ib_link: str, ib_code: str, set_by: str
    ) -> int:
        return await self.append(
            StaffIbSet(_now(), guild_id, staff_id, staff_username, ib_link, ib_code, set_by)
        )

    async def remove_staff_ib(self, guild_id: str, staff_id: str, removed_by: str) -> int | None:
        if not await self.staff_profile(guild_id, staff_id):
            return None
        return await self.append(StaffIbRemoved(_now(), guild_id, staff_id, removed_by))

    async def erase_user(self, guild_id: str, user_id: str, requested_by: str) -> int:
        return await self.append(UserErased(_now(), guild_id, user_id, requested_by))

    async def settle_join(self, request: SettleRequest) -> Settled:
        """Settle by hand which invite a join used (`service.settle`'s rules, against everything durable
        now); raises `SettleRefused` with the reason for staff. Returns once the settlement is durable."""
        durable = self.writer.durable.value
        found = await self.queries.lookup_user(request.guild_id, request.user_id, min_lsn=durable)
        owner = await self.queries.invite_owner(request.guild_id, request.invite_code, min_lsn=durable)
        record, join = settlement(request, found, owner, _now())
        settled = Settled(await self.append(record), record, join)
        if self.announce is not None:
            self.announce(Durable(settled.lsn, record))
        return settled

    # --- read side (each waits until everything durable now is applied) ------------------------------

    async def lookup_user(self, guild_id: str, user_id: str) -> Any:
        return await self.queries.lookup_user(guild_id, user_id, min_lsn=self.writer.durable.value)

    async def join_logs(self, guild_id: str, **filters: Any) -> Any:
        return await self.queries.join_logs(guild_id, min_lsn=self.writer.durable.value, **filters)

    async def invite_comparison(self, guild_id: str, discord_uses: Mapping[str, int]) -> Any:
        return await self.queries.invite_comparison(guild_id, discord_uses, min_lsn=self.writer.durable.value)

    async def staff_profile(self, guild_id: str, staff_id: str | None = None) -> Any:
        return await self.queries.staff_profile(guild_id, staff_id, min_lsn=self.writer.durable.value)

    async def staff_counts(self, guild_id: str, **kwargs: Any) -> Any:
        return await self.queries.staff_counts(guild_id, min_lsn=self.writer.durable.value, **kwargs)

    async def export(
        self,
        guild_id: str | None,
        fmt: str = "csv",
        since: datetime | None = None,
        until: datetime | None = None,
        directory: Path | None = None,
    ) -> ExportFile:
        """Write an export to a temporary file (in a worker thread, in constant memory); the caller
        attaches or moves it and removes it afterwards."""
        await self.queries.wait_applied(self.writer.durable.value)
        suffix = ".csv" if fmt == "csv" else ".jsonl"
        fd, name = tempfile.mkstemp(prefix="invite-ledger-export-", suffix=suffix, dir=directory)
        os.close(fd)
        path = Path(name)
        rows = await self.queries.export_to(path, guild_id=guild_id, fmt=fmt, since=since, until=until)
        size = await anyio.to_thread.run_sync(lambda: path.stat().st_size)
        return ExportFile(path, rows, size, fmt)

    async def status(self) -> LedgerStatus:
        await anyio.to_thread.run_sync(self._refresh_segments)
        return LedgerStatus(
            durable_lsn=self.writer.durable.value,
            applied_lsn=self.applier.applied.value,
            segments=len(self._segment_names),
            sealed_lsn=self.writer.sealed.value,
            targets=self.shipper.status() if self.shipper is not None else {},
            last_recovery=self.recovery_line,
            wal_dir=str(self.config.wal_dir),
            db_path=str(self.config.db_path),
        )

    # --- proof: which segment holds an LSN ------------------------------------------------------------

    def _refresh_segments(self) -> None:
        found = sorted(
            (first, name)
            for name in os.listdir(self.config.wal_dir)
            if (first := parse_segment_name(name)) is not None
        )
        self._segment_firsts = [first for first, _ in found]
        self._segment_names = [name for _, name in found]
        self.metrics.wal_segments.set(len(found))

    def segment_of(self, lsn: int) -> str:
        """The segment file whose LSN range holds `lsn` (named by first LSN, so a bisect finds it)."""
        if not self._segment_firsts or lsn >= self._segment_firsts[-1]:
            self._refresh_segments()
        index = bisect.bisect_right(self._segment_firsts, lsn) - 1
        return self._segment_names[index] if index >= 0 else "?"
