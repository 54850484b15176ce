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

from collections.abc import Sequence
from pathlib import Path

import anyio
import attrs
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectSendStream

from service.projection import applied_lsn, apply_frames, open_database
from wal import LogEntry, Watermark, follow


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
            # The next batch is read while this one is applied: both run in worker threads and mostly wait
            # (for the disk, for SQLite, for the GIL a busy event loop holds), so overlapping them keeps
            # the projection closer behind the log. One batch read ahead at most: memory stays bounded.
            batches, to_apply = anyio.create_memory_object_stream[Sequence[LogEntry]](1)
            async with anyio.create_task_group() as tg, to_apply:
                tg.start_soon(self._read, start + 1, batches)
                task_status.started()
                async for frames in to_apply:
                    # A shielded apply: cancellation mid-transaction would leave the worker thread running
                    # while we close the connection under it.
                    with anyio.CancelScope(shield=True):
                        await anyio.to_thread.run_sync(apply_frames, conn, frames)
                    self.applied.advance(frames[-1].lsn)
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(conn.close)

    async def _read(self, from_lsn: int, batches: MemoryObjectSendStream[Sequence[LogEntry]]) -> None:
        async with batches:
            async for frames in follow(self.wal_dir, from_lsn, self.durable, batch_max=self.batch_max):
                try:
                    await batches.send(frames)
                except anyio.BrokenResourceError:
                    return  # the applying side failed and closed: its error is the one to report
