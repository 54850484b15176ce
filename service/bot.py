"""Running the bot for real: start-up recovery, then the service with the interactions.py adapter in front.

    recover (log repair, database rebuild/catch-up, restored guild state)
      → Service (ledger, health) → adapter + attribution actor → slash commands, join-log poster

The same runner serves Discord and the demo (which points `discord.api_base_url` at `sim/`).
"""

from __future__ import annotations

import logging

import anyio
from anyio.abc import TaskStatus

import commands
from commands.join_log import JoinLogPoster
from recovery.lock import DataDirLock
from recovery.startup import StartupReport, recover
from service.app import Service, core_config, stop_on_signals
from service.attribution_actor import Durable
from service.config import Config
from service.discord_adapter import DiscordAdapter
from service.health import DISCORD

log = logging.getLogger(__name__)


def startup_recover(config: Config) -> StartupReport:
    """Start-up recovery (recovery/): repairs the log's torn tail, rebuilds or catches up the database,
    and restores each guild's attribution state."""
    return recover(config, core=core_config(config))


async def run_bot(
    config: Config,
    *,
    handle_signals: bool = True,
    task_status: TaskStatus[Service] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Run until SIGTERM/SIGINT (or `service.stop()`); started(service) once logged in to Discord.

    The data directory's lock is held from before recovery until the service has stopped, so `rebuild`
    and `restore` refuse to touch a log that is in use."""
    lock = await anyio.to_thread.run_sync(DataDirLock(config.data_dir, "service").acquire)
    try:
        await _run_locked(config, handle_signals=handle_signals, task_status=task_status)
    finally:
        lock.release()


async def _run_locked(config: Config, *, handle_signals: bool, task_status: TaskStatus[Service]) -> None:
    report = await anyio.to_thread.run_sync(startup_recover, config)
    log.info("%s", report.line)
    adapter = DiscordAdapter.from_config(config)
    channel = config.discord.join_log_channel_id
    durable_send, durable_receive = anyio.create_memory_object_stream[Durable](1000)
    service = Service.build(
        config,
        adapter,
        front=adapter.run,
        restored=report.restored,
        recovery_line=report.line,
        opened_log=report.opened_log,
        durable_out=durable_send if channel else None,
    )
    service.metrics.recovery_seconds.set(report.seconds)
    adapter.on_ready = lambda: service.readiness.mark_ready(DISCORD)
    adapter.on_disconnect = lambda: service.readiness.mark_not_ready(DISCORD, "gateway disconnected")
    commands.register(adapter, service.ledger)
    async with anyio.create_task_group() as tg:
        if handle_signals:
            await tg.start(stop_on_signals, service)
        if channel:
            tg.start_soon(JoinLogPoster(adapter, channel, durable_receive).run)
        else:
            durable_receive.close()
        await tg.start(service.run)
        task_status.started(service)
        await service.stopped.wait()
        tg.cancel_scope.cancel()
