"""The attribution actor: drives the pure `Attributor` core with gateway events, fetch answers and clock
ticks, and performs the effects it returns.

- One task owns the core and its inbox, so events are decided one at a time in arrival order, and each
  guild is one ordered lane inside the core.
- Fetches run concurrently in fetcher tasks (the core asks for at most one per guild at a time), each under
  a timeout, and feed their answer back through the inbox; a 429's retry_after goes to the core, which
  honours it.
- Time is only trusted in feed order. The core decides a fetch once `gateway_latency` has passed since its
  answer, assuming every join that fetch counted has been fed by then. Gateway events wait in buffers
  upstream of the core (the adapter's stream, the pump), while fetch answers and clock ticks enter the inbox
  directly, so a tick could overtake a join that arrived before it, and the core would pin that join's use
  on another member: the worst error this product can make. So a tick or fetch answer stamped T is held
  back until every gateway event stamped before T has been fed (a later one was fed, or nothing is
  waiting upstream).
- Records to log go, in decision order, to the appender task, which appends everything waiting as one
  batch (one group commit) and only then publishes them downstream as durable (`Durable(lsn, record)`):
  nothing downstream (a join-log message, a metric, a command) sees a join before fdatasync returned.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

import anyio
import anyio.lowlevel
import attrs
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from service.attribution import Attributor, FetchInvites, LogRecord, WakeAt
from service.events import (
    ClockTick,
    Event,
    FetchFailed,
    FetchRateLimited,
    GatewayDisconnected,
    GuildAvailable,
    InviteCreated,
    InviteDeleted,
    InviteFinalUses,
    InvitesFetched,
    MemberJoined,
    MemberRemoved,
)
from service.fetch_pool import FetchPool
from service.gateway import FetchError, GatewayPort, RateLimited
from service.metrics import ServiceMetrics
from service.records import Record
from service.streams import receive_soon, send_soon
from wal import WalWriteError

log = logging.getLogger(__name__)

#: Events stamped by the bot's clock that the core uses to decide: fed only once earlier joins are in.
_TIMING_EVENTS = (ClockTick, InvitesFetched, FetchRateLimited, FetchFailed)
_TimingEvent = ClockTick | InvitesFetched | FetchRateLimited | FetchFailed
#: Events from the gateway port's stream (stamped on arrival, in stamp order).
_GATEWAY_EVENTS = (
    GuildAvailable,
    GatewayDisconnected,
    InviteCreated,
    InviteDeleted,
    InviteFinalUses,
    MemberJoined,
    MemberRemoved,
)

#: The decision loop yields to other tasks at least once per this many events taken from a full inbox.
DECIDE_RUN = 64
AppendBatch = Callable[[Sequence[Record]], Awaitable[Sequence[int]]]


@attrs.frozen
class Durable:
    """A record that is on disk, with its LSN."""

    lsn: int
    record: Record


@attrs.frozen
class _Lane:
    """Where the decision loop hands its effects."""

    records: MemoryObjectSendStream[Record]
    fetches: FetchPool


def _utcnow() -> datetime:
    return datetime.now(UTC)


@attrs.define(eq=False)
class AttributionActor:
    gateway: GatewayPort
    append_batch: AppendBatch
    attributor: Attributor = attrs.field(factory=Attributor)
    fetch_timeout_s: float = 10.0
    inbox_size: int = 1024
    append_batch_max: int = 512
    #: Where durable records are published (join-log channel, metrics); None drops them.
    durable_out: MemoryObjectSendStream[Durable] | None = None
    clock: Callable[[], datetime] = _utcnow
    restored: Sequence[Event] = ()  # GuildRestored events from the log, fed before anything else
    # --- counters for status and metrics
    rate_limited: int = 0
    fetch_failures: int = 0
    announcements_dropped: int = 0
    append_failures: int = 0  # decided records the log refused (disk full, I/O error): not acknowledged
    metrics: ServiceMetrics | None = None
    _wake_at: float = math.inf
    # Until when the clock loop sleeps (-inf: it is not asleep); an announced wake no earlier than that
    # need not wake it: it rechecks `_wake_at` when it wakes up anyway.
    _asleep_until: float = -math.inf
    _gateway_in_flight: int = 0  # gateway events taken by the pump and not yet fed to the core
    _last_fed_at: datetime | None = None  # the latest stamp of a gateway event fed to the core
    # Ticks and fetch answers waiting for earlier gateway events.
    _held: list[_TimingEvent] = attrs.field(factory=list)
    _wake_changed: anyio.Event = attrs.field(factory=anyio.Event)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        inbox_send, inbox_receive = anyio.create_memory_object_stream[Event](self.inbox_size)
        records_send, records_receive = anyio.create_memory_object_stream[Record](self.append_batch_max * 4)
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._append_loop, records_receive)
            tg.start_soon(self._pump_gateway, inbox_send.clone())
            tg.start_soon(self._clock_loop, inbox_send.clone())
            task_status.started()
            fetches = FetchPool(self._fetch, self._fetch_timed_out, self.fetch_timeout_s, tg, inbox_send)
            lane = _Lane(records_send, fetches)
            async with inbox_send, inbox_receive, records_send:
                for event in self.restored:
                    await self._decide(event, lane)
                run = 0
                while True:
                    try:
                        event = inbox_receive.receive_nowait()
                        run += 1
                        if run % DECIDE_RUN == 0:
                            await anyio.lowlevel.checkpoint()  # let the appender and fetchers in
                    except anyio.WouldBlock:
                        try:
                            event = await inbox_receive.receive()
                        except anyio.EndOfStream:
                            break
                    except anyio.EndOfStream:
                        break
                    await self._decide(event, lane)
                fetches.close()

    async def _decide(self, event: Event, lane: _Lane) -> None:
        if isinstance(event, _TIMING_EVENTS):
            if not self._caught_up(event.at):
                self._held.append(event)
                if len(self._held) == 1 and self._asleep_until > -math.inf:
                    self._wake_changed.set()  # the clock loop polls while events are held: re-arm it
                return
            await self._feed(event, lane)
            return
        if isinstance(event, _GATEWAY_EVENTS):
            self._gateway_in_flight -= 1
            if self._last_fed_at is None or event.at > self._last_fed_at:
                self._last_fed_at = event.at
        await self._feed(event, lane)
        if self._held:
            await self._release_held(lane)

    async def _release_held(self, lane: _Lane) -> None:
        """Feed the held events that are now caught up, in arrival order; hold the rest again.

        Under load many answers wait behind the gateway's buffer and this runs after every gateway event,
        so the upstream check (a statistics snapshot) is made once and reused until a feed, the only step
        that can yield and let the upstream change; the stamp check costs nothing."""
        held, self._held = self._held, []
        upstream_idle: bool | None = None
        for waiting in held:
            if self._last_fed_at is None or self._last_fed_at < waiting.at:
                if upstream_idle is None:
                    upstream_idle = self._upstream_idle()
                if not upstream_idle:
                    self._held.append(waiting)
                    continue
            await self._feed(waiting, lane)
            upstream_idle = None

    def _caught_up(self, at: datetime) -> bool:
        """Has every gateway event stamped before `at` been fed to the core?"""
        if self._last_fed_at is not None and self._last_fed_at >= at:
            return True  # the gateway stream is in stamp order: everything earlier came before
        return self._upstream_idle()

    def _upstream_idle(self) -> bool:
        """Is no gateway event waiting upstream of the core (in the port's stream or the pump)?"""
        stats = self.gateway.events.statistics()
        return (
            self._gateway_in_flight == 0 and stats.current_buffer_used == 0 and stats.tasks_waiting_send == 0
        )

    async def _feed(self, event: Event, lane: _Lane) -> None:
        for effect in self.attributor.handle(event):
            if isinstance(effect, LogRecord):
                await send_soon(lane.records, effect.record)
            elif isinstance(effect, FetchInvites):
                lane.fetches.submit(effect)
            elif isinstance(effect, WakeAt):
                self._wake_at = wake = effect.at.timestamp()
                # The next wake moves with nearly every join; re-arming the timer each time cost a loop
                # step per move. Only an earlier wake than the one armed needs the loop now.
                if wake < self._asleep_until:
                    self._wake_changed.set()

    async def _pump_gateway(self, inbox: MemoryObjectSendStream[Event]) -> None:
        async with inbox, self.gateway.events as events:
            while True:
                try:
                    event = await receive_soon(events)
                except anyio.EndOfStream:
                    return
                self._gateway_in_flight += 1
                await send_soon(inbox, event)

    async def _clock_loop(self, inbox: MemoryObjectSendStream[Event]) -> None:
        async with inbox:
            while True:
                self._wake_changed = anyio.Event()
                now = self.clock().timestamp()
                delay = self._wake_at - now
                if delay <= 0:
                    self._wake_at = math.inf  # the core announces the next wake, if any
                    await inbox.send(ClockTick(self.clock()))
                    continue
                # A held tick is retried when the next gateway event is fed; with nothing upstream
                # the next tick finds the core caught up, so poll at least this often meanwhile.
                if self._held:
                    delay = min(delay, 0.05)
                delay = min(delay, 3600)
                self._asleep_until = now + delay
                try:
                    with anyio.move_on_after(delay):
                        await self._wake_changed.wait()
                finally:
                    self._asleep_until = -math.inf

    async def _fetch(self, request: FetchInvites) -> Event:
        """One fetch (the fetch pool puts it under `fetch_timeout_s`), as the event to feed back."""
        guild_id, rid = request.guild_id, request.request_id
        try:
            invites = await self.gateway.fetch_invites(guild_id)
        except RateLimited as exc:
            self.rate_limited += 1
            if self.metrics is not None:
                self.metrics.invite_fetch_rate_limited_total.inc()
            return FetchRateLimited(guild_id, rid, self.clock(), retry_after=exc.retry_after)
        except (FetchError, TimeoutError, OSError) as exc:
            return self._fetch_failed(request, exc)
        return InvitesFetched(
            guild_id,
            rid,
            self.clock(),
            invites=invites.invites,
            vanity_code=invites.vanity_code,
            vanity_uses=invites.vanity_uses,
        )

    def _fetch_failed(self, request: FetchInvites, exc: BaseException) -> FetchFailed:
        self.fetch_failures += 1
        if self.metrics is not None:
            self.metrics.invite_fetch_failures_total.inc()
        reason = str(exc) or type(exc).__name__
        log.warning("invite fetch failed guild=%s reason=%s", request.guild_id, reason)
        return FetchFailed(request.guild_id, request.request_id, self.clock(), reason=reason)

    def _fetch_timed_out(self, request: FetchInvites) -> FetchFailed:
        return self._fetch_failed(request, TimeoutError())

    async def _append_loop(self, records: MemoryObjectReceiveStream[Record]) -> None:
        async with records:
            async for first in records:
                batch = [first]
                while len(batch) < self.append_batch_max:
                    try:
                        batch.append(records.receive_nowait())
                    except anyio.WouldBlock:
                        break
                await self._append_until_written(batch)

    async def _append_until_written(self, batch: list[Record]) -> None:
        """Append a batch and publish each record once durable, retrying while the log refuses records
        (disk full, EIO: WAL rule 6).

        Refused records are not acknowledged and their bytes were cut off, so writing them again is safe;
        records of the batch that did become durable (a batch can span group commits) are published and
        not written again. The decided joins wait here (the bounded streams behind this task fill up and
        push back) and are written once space returns, instead of being dropped. A decided record that
        reached this task is appended even while the service shuts down (shielded, bounded by the
        shutdown deadline)."""
        delay = 0.05
        while batch:
            with anyio.CancelScope(shield=True):
                try:
                    lsns = list(await self.append_batch(batch))
                except WalWriteError as exc:
                    self.append_failures += 1
                    lsns = list(getattr(exc, "durable_lsns", None) or [0] * len(batch))
                    log.error(
                        "the log refused %d decided record(s), not acknowledged; retrying in %.2fs: %s",
                        lsns.count(0),
                        delay,
                        exc,
                    )
            for lsn, record in zip(lsns, batch, strict=True):
                if lsn:
                    self.publish(Durable(lsn, record))
            batch = [record for lsn, record in zip(lsns, batch, strict=True) if not lsn]
            if not batch:
                return
            try:
                await anyio.sleep(delay)
            except anyio.get_cancelled_exc_class():
                log.error("stopping with %d decided record(s) the log refused: not recorded", len(batch))
                raise
            delay = min(delay * 2, 5.0)

    def publish(self, durable: Durable) -> None:
        # Never let a slow consumer (a join-log channel under Discord's rate limits) hold up joins: the
        # record is already safe; only its announcement is skipped, and counted.
        if self.durable_out is None:
            return
        try:
            self.durable_out.send_nowait(durable)
        except anyio.WouldBlock:
            self.announcements_dropped += 1
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            self.durable_out = None
