"""The process the kill -9 campaign kills: the restart path of the real service, with a scripted Discord.

    python -m recovery.faultlab.child DATA_DIR RUN_ID BACKEND [GO_FILE]

1. `recover(config)`, then prints `RECOVERED {json}` (its seconds and line).
2. With GO_FILE, waits until that file exists: the campaign checks the recovered database in between.
3. Builds the real `Service` (WAL writer, applier, attribution actor) on a `ScriptedGateway`, feeds it the
   recovered `GuildRestored` events, makes new guilds available and joins members continuously (a leave
   now and then), and prints `READY`, then `ACK <user_id> <lsn>` for each join the moment it is durable
   (the actor publishes a record only after fdatasync returned), unbuffered: printed means acknowledged.

Every run uses its own guild and user ids (`RUN_ID`), so a user joins exactly once across all runs and
"present exactly once" is a plain count.
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import timedelta
from pathlib import Path

import anyio

from recovery.lock import DataDirLock
from recovery.startup import recover
from service.app import Service
from service.attribution.config import AttributionConfig
from service.attribution_actor import Durable
from service.config import Config, load_config
from service.events import MemberInfo
from service.gateway import ScriptedGateway
from service.records import JoinRecorded

GUILDS = 3
CODES = 3
#: Quick decisions: joins are acknowledged within a few tens of milliseconds of arriving.
FAST = AttributionConfig(
    gateway_latency=timedelta(milliseconds=15),
    clock_skew=timedelta(milliseconds=5),
    min_fetch_gap=timedelta(milliseconds=1),
    max_join_wait=timedelta(seconds=2),
)


def child_config(data_dir: Path, **extra: str) -> Config:
    env = {"INVITE_LEDGER_DATA_DIR": str(data_dir), "INVITE_LEDGER_BACKUP_TARGETS": "", **extra}
    return load_config(None, env)


def _say(line: str) -> None:
    os.write(1, (line + "\n").encode())  # one unbuffered write: a kill cannot leave half a line behind


async def _announce(receive: anyio.abc.ObjectReceiveStream[Durable]) -> None:
    async with receive:
        async for durable in receive:
            if isinstance(durable.record, JoinRecorded):
                _say(f"ACK {durable.record.user_id} {durable.lsn}")


async def serve(config: Config, run_id: str, restored: tuple[object, ...]) -> None:
    gateway = ScriptedGateway(buffer=256)
    for event in restored:  # guilds of earlier runs exist (never available again): a fetch finds them
        gateway.add_guild(event.guild_id, event.guild_name)  # type: ignore[attr-defined]
    guilds = []
    for g in range(GUILDS):
        gid = f"{run_id}{g:02d}"
        gateway.add_guild(gid, f"Run {run_id} guild {g}")
        codes = [f"r{run_id}g{g}c{c}" for c in range(CODES)]
        for c, code in enumerate(codes):
            gateway.create_invite(gid, code, inviter_id=str(700 + c), inviter_name=f"staff{c}")
        guilds.append((gid, codes))
    send, receive = anyio.create_memory_object_stream[Durable](100_000)
    service = Service.build(config, gateway, core=FAST, durable_out=send, restored=restored)  # type: ignore[arg-type]
    async with anyio.create_task_group() as tg:
        tg.start_soon(_announce, receive)
        await tg.start(service.run)
        for gid, _codes in guilds:
            await gateway.make_available(gid, with_invites=True)
        _say("READY")
        n = 0
        while True:
            gid, codes = guilds[n % GUILDS]
            user = f"{run_id}{n:07d}"
            await gateway.join(gid, MemberInfo(user, f"u{user}", f"U {user}"), codes[n % CODES])
            if n % 10 == 9:
                await gateway.leave(gid, f"{run_id}{n - 9:07d}")
            n += 1
            await anyio.sleep(0.002)


def main(argv: list[str]) -> int:
    data_dir, run_id, backend = Path(argv[0]), argv[1], argv[2]
    go = Path(argv[3]) if len(argv) > 3 else None
    config = child_config(data_dir)
    # As the `run` command does: hold the data directory from recovery until the process ends.
    with DataDirLock(config.data_dir, "service (fault campaign child)"):
        report = recover(config, progress=False)
        summary = {
            "seconds": report.seconds,
            "line": report.line,
            "last_lsn": report.last_lsn,
            "timings": dict(report.timings),
        }
        _say("RECOVERED " + json.dumps(summary))
        if go is not None:
            deadline = time.monotonic() + 60
            while not go.exists():
                if time.monotonic() > deadline:
                    return 2
                time.sleep(0.002)
        anyio.run(serve, config, run_id, report.restored, backend=backend)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
