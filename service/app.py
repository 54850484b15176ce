"""The supervisor: one task group that runs the whole service, started and stopped in order.

Start (each step awaits the previous one's `started()`): the ledger (WAL writer, applier, backup shipper),
the optional health endpoint, then the front (the attribution actor and the Discord adapter). An actor
that fails takes the process down with a non-zero exit; the restart's recovery repairs what is needed.

Stop (SIGTERM/SIGINT, as hypercorn's nested task groups): first the front, so no new join enters; the
attribution actor's appender finishes the appends it already took (shielded); then the applier is given
the rest of the deadline to catch up; then the ledger is cancelled. The whole stop is bounded by
`stop_deadline_s` (5 s by default).
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import anyio
import attrs
from anyio.abc import TaskStatus

from service.attribution import Attributor
from service.attribution.config import AttributionConfig as CoreConfig
from service.attribution_actor import AttributionActor, Durable
from service.config import Config
from service.events import Event
from service.gateway import GatewayPort
from service.health import DISCORD, RECOVERY, HealthServer, Readiness
from service.ledger import Ledger
from service.metrics import ServiceMetrics
from service.runtime import service_runtime
from wal import RecoveryReport

log = logging.getLogger(__name__)


#: A front runner: runs the Discord side (or a script) until cancelled; calls started() once connected.
FrontRunner = Callable[..., Coroutine[Any, Any, Any]]


def core_config(config: Config) -> CoreConfig:
    from datetime import timedelta

    return CoreConfig(
        young_account_days=config.discord.young_account_days,
        duplicate_window=timedelta(seconds=config.attribution.dedup_window_s),
        fetch_timeout=timedelta(seconds=config.attribution.fetch_timeout_s + 5),
        max_join_wait=timedelta(seconds=config.attribution.max_wait_s),
        gateway_latency=timedelta(seconds=config.attribution.gateway_latency_s),
        audit_log_latency=timedelta(seconds=config.attribution.audit_log_latency_s),
    )


@attrs.define(eq=False)
class Service:
    config: Config
    gateway: GatewayPort
    ledger: Ledger
    attribution: AttributionActor
    metrics: ServiceMetrics
    readiness: Readiness
    front: FrontRunner | None = None  # e.g. the interactions.py adapter's run; None for a scripted gateway
    stop_deadline_s: float = 5.0
    _stop: anyio.Event = attrs.field(factory=anyio.Event)
    stopped: anyio.Event = attrs.field(factory=anyio.Event)  # set once run() has returned
    health: HealthServer | None = None  # the /healthz and /metrics endpoint, when enabled

    @classmethod
    def build(
        cls,
        config: Config,
        gateway: GatewayPort,
        *,
        front: FrontRunner | None = None,
        core: CoreConfig | None = None,
        durable_out: anyio.abc.ObjectSendStream[Durable] | None = None,
        restored: Sequence[Event] = (),
        recovery_line: str | None = None,
        opened_log: RecoveryReport | None = None,
    ) -> Service:
        metrics = ServiceMetrics.create()
        ledger = Ledger.from_config(config, metrics=metrics, opened_log=opened_log)
        ledger.recovery_line = recovery_line
        actor = AttributionActor(
            gateway,
            ledger.append_batch,
            attributor=Attributor(core or core_config(config)),
            fetch_timeout_s=config.attribution.fetch_timeout_s,
            durable_out=durable_out,  # type: ignore[arg-type]
            restored=restored,
        )
        actor.metrics = metrics
        ledger.announce = actor.publish  # settlements by hand reach the join-log channel like joins
        readiness = Readiness(gauge=metrics.ready)
        return cls(config, gateway, ledger, actor, metrics, readiness, front)

    def stop(self) -> None:
        """Ask for an orderly stop (what SIGTERM does)."""
        self._stop.set()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        try:
            with service_runtime():  # GIL switch interval and GC threshold: see service/runtime.py
                await self._run(task_status)
        finally:
            self.stopped.set()

    async def _run(self, task_status: TaskStatus[None]) -> None:
        async with anyio.create_task_group() as back:
            await back.start(self.ledger.run)
            self.readiness.mark_ready(RECOVERY)
            if self.config.http.enabled:
                self.health = HealthServer(self.readiness, self.metrics.registry, port=self.config.http.port)
                await back.start(self.health.run)
            async with anyio.create_task_group() as front:
                await front.start(self.attribution.run)
                if self.front is not None:
                    await front.start(self.front)
                else:
                    self.readiness.mark_ready(DISCORD)
                task_status.started()
                await self._stop.wait()
                log.info("stopping: front first, then the ledger (deadline %.1fs)", self.stop_deadline_s)
                front.cancel_scope.cancel()
            # Every append that was taken is now durable or refused; let the projection catch up.
            with anyio.move_on_after(self.stop_deadline_s * 0.3):
                await self.ledger.applier.applied.wait_for(self.ledger.writer.durable.value)
            back.cancel_scope.cancel()


async def stop_on_signals(
    service: Service, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        task_status.started()
        async for signum in signals:
            log.info("received %s", signal.Signals(signum).name)
            service.stop()
            return
