"""Helpers for the recovery tests: configurations, small real logs, the service on a scripted Discord."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio

from recovery.faultlab.child import FAST
from service.app import Service
from service.attribution_actor import Durable
from service.config import Config, load_config
from service.events import MemberInfo
from service.gateway import ScriptedGateway
from service.records import JoinRecorded


def make_config(data_dir: Path, **env: str) -> Config:
    base = {"INVITE_LEDGER_DATA_DIR": str(data_dir), "INVITE_LEDGER_BACKUP_TARGETS": ""}
    return load_config(None, {**base, **env})


async def wait_until(condition: Callable[[], bool], limit_s: float = 20.0) -> None:
    with anyio.fail_after(limit_s):
        while not condition():
            await anyio.sleep(0.01)


Hook = Callable[[Service], Awaitable[None]]


async def join_stream(
    config: Config,
    joins: int,
    *,
    prefix: str = "77",
    hooks: dict[int, Hook] | None = None,
    pace_s: float = 0.002,
    settle_s: float = 1.0,
    before_run: Callable[[Service], None] | None = None,
    until_shipped: bool = False,
) -> tuple[dict[str, int], Service]:
    """Run the service, join `joins` members (calling hooks[n] before join n), wait until every join is
    acknowledged or nothing more has been for `settle_s` (and, with `until_shipped`, until every sealed
    segment is shipped), stop it. Returns (user id -> LSN, service)."""
    acked: dict[str, int] = {}
    gateway = ScriptedGateway(buffer=1024)
    gid, codes = f"{prefix}00", [f"{prefix}a", f"{prefix}b", f"{prefix}c"]
    gateway.add_guild(gid, "Test Guild")
    for c, code in enumerate(codes):
        gateway.create_invite(gid, code, inviter_id=str(800 + c), inviter_name=f"staff{c}")
    send, receive = anyio.create_memory_object_stream[Durable](100_000)
    service = Service.build(config, gateway, core=FAST, durable_out=send)
    if before_run is not None:
        before_run(service)

    async def collect() -> None:
        async with receive:
            async for durable in receive:
                if isinstance(durable.record, JoinRecorded):
                    acked[durable.record.user_id] = durable.lsn

    async with anyio.create_task_group() as tg:
        tg.start_soon(collect)
        async with anyio.create_task_group() as running:  # left once the service stopped in order
            await running.start(service.run)
            await gateway.make_available(gid, with_invites=True)
            for n in range(joins):
                if hooks and n in hooks:
                    await hooks[n](service)
                await gateway.join(gid, MemberInfo(f"{prefix}{n:07d}", f"m{n}", f"M {n}"), codes[n % 3])
                await anyio.sleep(pace_s)
            seen, quiet = -1, 0.0
            with anyio.fail_after(60):
                while len(acked) < joins and quiet < settle_s:
                    await anyio.sleep(0.05)
                    quiet = 0.0 if len(acked) != seen else quiet + 0.05
                    seen = len(acked)
            shipper, writer = service.ledger.shipper, service.ledger.writer
            if until_shipped and shipper is not None:
                await wait_until(
                    lambda: all(t.shipped_lsn >= writer.sealed.value for t in shipper.status().values())
                )
            service.stop()
        tg.cancel_scope.cancel()
    return acked, service
