"""Campaigns 6 and 7: the whole data directory lost, and the backup target down for a while.

The real service runs with an S3 backup target (moto's S3 server on 127.0.0.1) and small segments, joining
members on a scripted Discord. With `outage`, the S3 server is stopped mid-stream: joins go on being
acknowledged, the backlog grows and shows in `checkpoint --json`; the server comes back (moto keeps its
buckets in memory, so a new server on the same port serves the same objects) and the backlog drains. The
service stops, the data directory is deleted, and `invite-ledger restore --from s3://...` runs in a
separate process with nothing but AWS_* variables, as on a new machine. Every join in a shipped segment
must come back exactly once.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import anyio

from recovery.faultlab.child import FAST
from recovery.faultlab.invariants import Tally, check, record
from recovery.startup import recover
from service.app import Service
from service.attribution_actor import Durable
from service.config import Config, load_config
from service.events import MemberInfo
from service.gateway import ScriptedGateway
from service.records import JoinRecorded

REPO = Path(__file__).resolve().parents[2]
ACCESS_KEY, SECRET_KEY = "AKIDFAULTLAB", "faultlab-secret"


class Moto:
    """moto's threaded S3 server on 127.0.0.1; `stop()` and `start()` again on the same port."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
        self._make = ThreadedMotoServer
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.server.start()
        self.port = self.server.get_host_and_port()[1]

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        return {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_REGION": "us-east-1",
        }

    def new_bucket(self) -> str:
        import boto3

        name = f"ledger-{uuid.uuid4().hex[:10]}"
        client = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name="us-east-1",
        )
        client.create_bucket(Bucket=name)
        return name

    def stop(self) -> None:
        self.server.stop()

    def start(self) -> None:
        self.server = self._make(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()


def service_config(data_dir: Path, url: str, moto: Moto) -> Config:
    env = {
        **moto.env(),
        "INVITE_LEDGER_DATA_DIR": str(data_dir),
        "INVITE_LEDGER_BACKUP_TARGETS": url,
        "INVITE_LEDGER_WAL_SEGMENT_BYTES": "4096",
        "INVITE_LEDGER_BACKUP_INTERVAL_S": "0.2",
        "INVITE_LEDGER_BACKUP_RETRY_MIN_S": "0.05",
        "INVITE_LEDGER_BACKUP_RETRY_MAX_S": "0.2",
        "INVITE_LEDGER_BACKUP_REQUEST_TIMEOUT_S": "2",
    }
    return load_config(None, env)


def _checkpoint(config: Config) -> dict[str, Any]:
    """`invite-ledger checkpoint --json` as an operator would run it beside the service."""
    command = [
        sys.executable,
        "-m",
        "service.cli",
        "checkpoint",
        "--json",
        "--data-dir",
        str(config.data_dir),
    ]
    env = {**os.environ, "INVITE_LEDGER_BACKUP_TARGETS": ",".join(config.backup_targets)}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, timeout=60, check=True)
    result: dict[str, Any] = json.loads(done.stdout)
    return result


async def _until(condition: Any, what: str, limit_s: float = 30.0) -> None:
    with anyio.fail_after(limit_s):
        while not condition():  # noqa: ASYNC110 - the state belongs to the service under test
            await anyio.sleep(0.02)


async def _serve(config: Config, moto: Moto, joins: int, outage: bool, tally: Tally) -> dict[str, int]:
    acked: dict[str, int] = {}
    gateway = ScriptedGateway(buffer=1024)
    gid, codes = "6060", ["s3a", "s3b", "s3c"]
    gateway.add_guild(gid, "Backup Guild")
    for c, code in enumerate(codes):
        gateway.create_invite(gid, code, inviter_id=str(600 + c), inviter_name=f"staff{c}")
    send, receive = anyio.create_memory_object_stream[Durable](100_000)
    service = Service.build(config, gateway, core=FAST, durable_out=send)

    async def collect() -> None:
        async with receive:
            async for durable in receive:
                if isinstance(durable.record, JoinRecorded):
                    acked[durable.record.user_id] = durable.lsn

    async def join_some(start: int, count: int) -> None:
        for n in range(start, start + count):
            await gateway.join(gid, MemberInfo(f"66{n:07d}", f"m{n}", f"M {n}"), codes[n % 3])
            await anyio.sleep(0.003)
        await _until(lambda: len(acked) >= start + count, "joins acknowledged")

    async with anyio.create_task_group() as tg:
        tg.start_soon(collect)
        async with anyio.create_task_group() as running:  # left once the service stopped in order
            await running.start(service.run)
            await gateway.make_available(gid, with_invites=True)
            shipper = service.ledger.shipper
            assert shipper is not None
            [url] = shipper.status()  # the target's own spelling of its URL
            writer = service.ledger.writer
            third = joins // 3
            await join_some(0, third)
            if outage:
                moto.stop()
                await join_some(third, third)  # acknowledged while the target is down
                await _until(lambda: shipper.status()[url].backlog_segments >= 2, "a backlog")
                down = await anyio.to_thread.run_sync(_checkpoint, config)
                target = down["targets"][0]
                tally.notes["backlog_during_outage"] = target["lag_records"]
                tally.notes["backlog_segments_during_outage"] = shipper.status()[url].backlog_segments
                moto.start()
                await _until(lambda: shipper.status()[url].backlog_segments == 0, "the backlog drained")
                tally.notes["drained"] = True
            else:
                await join_some(third, third)
            await join_some(2 * third, joins - 2 * third)
            await _until(
                lambda: shipper.status()[url].shipped_lsn >= writer.sealed.value, "sealed segments shipped"
            )
            tally.notes["shipped_lsn"] = shipper.status()[url].shipped_lsn
            tally.notes["durable_lsn"] = writer.durable.value
            service.stop()
        tg.cancel_scope.cancel()
    return acked


def run(work: Path, *, joins: int = 300, outage: bool = False, moto: Moto | None = None) -> Tally:
    owned = moto is None
    moto = moto or Moto()
    tally = Tally("data directory lost" + (", backup target down a while" if outage else ""))
    try:
        url = f"s3://{moto.new_bucket()}/ledger"
        data_dir = work / "lost"
        config = service_config(data_dir, url, moto)
        acked = anyio.run(_serve, config, moto, joins, outage, tally)
        tally.acknowledged = len(acked)
        shutil.rmtree(data_dir)  # the disk is gone
        tally.crashes += 1
        fresh = work / "new-machine"
        env = {"PATH": os.environ.get("PATH", ""), **moto.env()}
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "service.cli", "restore", "--from", url, "--data-dir", str(fresh)],
            cwd=REPO,
            env=env,
            capture_output=True,
            timeout=120,
        )
        if done.returncode != 0:
            raise RuntimeError(f"restore failed: {done.stderr.decode()}")
        tally.notes["restore_s"] = round(time.perf_counter() - started, 2)
        tally.notes["restore_line"] = done.stdout.decode().strip()
        restored_config = service_config(fresh, url, moto)
        report = recover(restored_config, progress=False)
        tally.recovery_ms.append(report.seconds * 1000)
        shipped = {user: lsn for user, lsn in acked.items() if lsn <= tally.notes["shipped_lsn"]}
        result = check(restored_config, shipped, None)
        record(tally, result)
        tally.notes["restored_from_backup"] = len(shipped) - len(result.lost)
        tally.notes["not_shipped"] = len(acked) - len(shipped)  # in the active segment when the disk died
    finally:
        if owned:
            moto.stop()
    return tally
