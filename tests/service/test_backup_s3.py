"""The shipper against moto's S3 server on 127.0.0.1: an outage builds a visible backlog that drains when
the server returns, and no segment name is ever PUT twice, across the outage and a lost state file."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest

from service.backup.restore import download_segments
from service.backup.shipper import BackupShipper, TargetStatus
from service.backup.targets import segment_name
from tests.service.test_backup_support import (
    SECRET_KEY,
    CountingMotoServer,
    SegmentDir,
    boto,
    new_bucket,
    s3_target,
    until,
    versions,
)

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def running(shipper: BackupShipper) -> AsyncIterator[BackupShipper]:
    async with anyio.create_task_group() as tg:
        await tg.start(shipper.run)
        yield shipper
        tg.cancel_scope.cancel()


async def test_outage_builds_a_backlog_that_drains_without_double_uploads(tmp_path: Path) -> None:
    server = CountingMotoServer()
    server.start()
    endpoint, port = server.endpoint, server.get_host_and_port()[1]
    bucket = new_bucket(endpoint)
    target = s3_target(endpoint, bucket, timeout_s=2.0)
    wal = SegmentDir(tmp_path / "wal")
    for first in (1, 101):
        wal.add(first, first + 99, size=20_000)

    def make() -> BackupShipper:
        return BackupShipper(
            [target],
            wal.path,
            tmp_path / "backup-state.json",
            sealed_segments=wal,
            scan_interval_s=30.0,
            retry_min_s=0.05,
            retry_max_s=0.2,
        )

    try:
        async with running(make()) as shipper:

            def status() -> TargetStatus:
                return shipper.status()[target.url]

            await until(lambda: status().shipped_lsn == 200, what="first two segments")

            server.stop()  # the target goes away
            for first in (201, 301, 401):
                wal.add(first, first + 99, size=30_000)
            await shipper.notify()
            await until(lambda: status().consecutive_failures >= 2, what="failures during the outage")
            down = status()
            assert (down.shipped_lsn, down.backlog_segments, down.backlog_bytes) == (200, 3, 90_000)
            assert down.oldest_unshipped_age_s is not None
            assert down.last_error is not None and SECRET_KEY not in down.last_error

            server = CountingMotoServer(port=port, requests=server.requests)  # it comes back
            server.start()
            await until(lambda: status().backlog_segments == 0, what="backlog drained")
            assert status().shipped_lsn == 500 and status().consecutive_failures == 0

        # A lost state file: the next start checks what is there and uploads nothing again.
        (tmp_path / "backup-state.json").unlink()
        async with running(make()) as shipper:
            await until(lambda: shipper.status()[target.url].shipped_lsn == 500, what="re-checked")

        names = [segment_name(f, f + 99) for f in (1, 101, 201, 301, 401)]
        for name in names:
            assert len(server.puts(f"/{bucket}/ledger/{name}")) == 1, name
        assert versions(endpoint, bucket, "ledger/segments/") == {f"ledger/{n}": 1 for n in names}
        head = boto(endpoint).head_object(Bucket=bucket, Key=f"ledger/{names[0]}")
        assert head["Metadata"]["sha256"] and head["ContentLength"] == 20_000

        manifest = json.loads(
            boto(endpoint).get_object(Bucket=bucket, Key="ledger/manifest.json")["Body"].read()
        )
        assert [e["name"] for e in manifest["segments"]] == names
        restored = download_segments(target, tmp_path / "restore")
        assert [p.read_bytes() for p in restored] == [
            (wal.path / f"{f:020d}.wal").read_bytes() for f in (1, 101, 201, 301, 401)
        ]
    finally:
        server.stop()
