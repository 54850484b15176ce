"""The DB applier actor: follows the log from the database's `applied_lsn` and builds the projection.

WAL rule 7: each batch is applied in one SQLite transaction that also advances `applied_lsn`, so a crash
between two batches leaves the database at a batch boundary and the next start resumes after it without
applying anything twice. The actor owns the write connection; every SQLite call runs in a worker thread so
the event loop never blocks.

The frames go to the worker thread undecoded (`apply_frames`): a join's row is read straight from its
payload there, so the per-record decoding (about 12 µs a join through the converter) no longer holds the
event loop, which the attribution actor and the WAL writer share.
"""

from __future__ import annotations

from pathlib import Path

import anyio
import attrs
from anyio.abc import TaskStatus

from service.projection import applied_lsn, apply_frames, open_database
from wal import Watermark, follow


@attrs.define(eq=False)
class Applier:
    wal_dir: Path
    db_path: Path
    durable: Watermark  # the WAL writer's durable-LSN watermark: only durable records are applied
    batch_max: int = 2048
    applied: Watermark = attrs.field(factory=Watermark)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        conn = await anyio.to_thread.run_sync(open_database, self.db_path)
        try:
            start = await anyio.to_thread.run_sync(applied_lsn, conn)
            self.applied.advance(start)
            task_status.started()
            async for frames in follow(self.wal_dir, start + 1, self.durable, batch_max=self.batch_max):
                # A shielded apply: cancellation mid-transaction would leave the worker thread running
                # while we close the connection under it.
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(apply_frames, conn, frames)
                self.applied.advance(frames[-1].lsn)
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(conn.close)
