"""Read side for slash commands and the CLI: one read connection, used off the event loop.

Read-your-writes: a command issued right after a join passes the join's LSN, and the query first waits
(bounded) until the applier's watermark has reached it, so staff never see a ledger older than what the
bot already acknowledged.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import anyio
import apsw
import attrs

from service import projection
from wal import Watermark

T = TypeVar("T")


def export_to_file(
    conn: apsw.Connection,
    path: Path,
    *,
    guild_id: str | None,
    fmt: str,
    since: datetime | None = None,
    until: datetime | None = None,
) -> int:
    """Stream an export into `path` chunk by chunk (constant memory); returns the number of rows."""
    if fmt not in ("csv", "jsonl"):
        raise ValueError(f"unknown export format {fmt!r}: use csv or jsonl")
    export = projection.export_csv if fmt == "csv" else projection.export_jsonl
    tally = projection.ExportTally()
    with open(path, "wb") as out:
        for chunk in export(conn, guild_id=guild_id, since=since, until=until, tally=tally):
            out.write(chunk)
    return tally.rows


class LedgerBehind(Exception):
    """The projection did not reach the asked LSN in time (the applier is lagging or stopped)."""


@attrs.define(eq=False)
class LedgerQueries:
    db_path: Path
    applied: Watermark
    segment_of: Callable[[int], str] | None = None
    wait_timeout_s: float = 5.0
    _conn: apsw.Connection | None = None
    # apsw connections may be used from any thread, but not by two at once: one query at a time.
    _limiter: anyio.CapacityLimiter = attrs.field(factory=lambda: anyio.CapacityLimiter(1))

    async def wait_applied(self, min_lsn: int) -> None:
        """Wait (bounded) until the projection has applied `min_lsn`."""
        if min_lsn and self.applied.value < min_lsn:
            try:
                with anyio.fail_after(self.wait_timeout_s):
                    await self.applied.wait_for(min_lsn)
            except TimeoutError:
                raise LedgerBehind(
                    f"the database has applied up to LSN {self.applied.value}, not yet {min_lsn}"
                ) from None

    async def _run(self, fn: Callable[..., T], *args: Any, min_lsn: int = 0, **kwargs: Any) -> T:
        await self.wait_applied(min_lsn)
        return await anyio.to_thread.run_sync(partial(self._call, fn, *args, **kwargs), limiter=self._limiter)

    def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        if self._conn is None:
            self._conn = projection.open_read_connection(self.db_path)
        return fn(self._conn, *args, **kwargs)

    async def aclose(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await anyio.to_thread.run_sync(conn.close, limiter=self._limiter)

    async def lookup_user(self, guild_id: str, user_id: str, *, min_lsn: int = 0) -> Any:
        return await self._run(
            projection.lookup_user, guild_id, user_id, segment_of=self.segment_of, min_lsn=min_lsn
        )

    async def join_logs(self, guild_id: str, *, min_lsn: int = 0, **filters: Any) -> Any:
        return await self._run(projection.join_logs, guild_id, min_lsn=min_lsn, **filters)

    async def invite_comparison(
        self, guild_id: str, discord_uses: Mapping[str, int], *, min_lsn: int = 0
    ) -> Any:
        return await self._run(projection.invite_comparison, guild_id, discord_uses, min_lsn=min_lsn)

    async def staff_counts(
        self,
        guild_id: str,
        since: datetime | None = None,
        until: datetime | None = None,
        period: str = "day",
        *,
        min_lsn: int = 0,
    ) -> Any:
        return await self._run(
            projection.staff_counts, guild_id, since=since, until=until, period=period, min_lsn=min_lsn
        )

    async def export_to(
        self,
        path: Path,
        *,
        guild_id: str | None,
        fmt: str,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> int:
        """Stream an export into `path` in a worker thread; returns the number of rows."""
        return await self._run(export_to_file, path, guild_id=guild_id, fmt=fmt, since=since, until=until)

    async def invite_owner(
        self, guild_id: str, code: str, *, min_lsn: int = 0
    ) -> tuple[str, str | None] | None:
        return await self._run(projection.invite_owner, guild_id, code, min_lsn=min_lsn)

    async def staff_profile(self, guild_id: str, staff_id: str | None = None, *, min_lsn: int = 0) -> Any:
        return await self._run(projection.staff_profile, guild_id, staff_id, min_lsn=min_lsn)

    async def stats(self) -> Any:
        return await self._run(projection.stats)
