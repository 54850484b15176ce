"""The attribution actor's fetcher tasks: invite fetches run concurrently, answers go to the actor's inbox.

The core asks for at most one fetch per guild at a time, so fetches of different guilds overlap (a real one
takes a network round trip). A task per fetch cost a task, a cancel scope and a stream clone each time (a
tenth of the event loop's time per join when nearly every join needs a fetch); here a request goes to an
idle fetcher, and a new fetcher starts only when none is idle. So there are as many fetchers as fetches
ever ran at once, never more than there are guilds, and they wait idle for the next request.

Timeouts: a watchdog task looks at the busy fetchers every quarter of `timeout` and cancels a fetch that
has run for at least `timeout`, so a fetch is cut off after between `timeout` and 1.25 × `timeout`. Moving
a deadline per fetch instead (set it when the fetch starts, clear it when it ends) cost two clock reads
and a loop timer armed and cancelled per fetch: ~3 % of the event loop's time per join in the pipeline
benchmark, for a guard that only has to stop a hung fetch from holding its fetcher for ever. The core
keeps its own, exact, timeout on the bot clock (AttributionConfig.fetch_timeout), and the Discord adapter
puts each REST call under `anyio.fail_after` as well.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
import attrs
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectSendStream

from service.attribution import FetchInvites
from service.events import Event
from service.streams import send_soon

#: Watchdog periods a fetch must have run through before it is cut off: it started at some point within
#: the period its start tick names, so after QUARTERS + 1 ticks it has run at least QUARTERS periods.
_QUARTERS = 4


class _Fetcher:
    """One fetcher task's state, read by the pool and the watchdog on the loop thread."""

    __slots__ = ("busy_since", "request", "scope", "wake")

    def __init__(self) -> None:
        self.wake = anyio.Event()  # set to hand it a request (or None: stop) while it is idle
        self.request: FetchInvites | None = None
        self.scope = anyio.CancelScope()  # the one its fetches run in; replaced once a fetch spends it
        self.busy_since: int | None = None  # the watchdog tick its running fetch started in


@attrs.define(eq=False)
class FetchPool:
    #: Performs one fetch and returns the event to feed back (an answer, a rate limit or a failure).
    fetch: Callable[[FetchInvites], Awaitable[Event]]
    #: The event to feed back for a fetch that took longer than `timeout` seconds.
    timed_out: Callable[[FetchInvites], Event]
    timeout: float
    tg: TaskGroup
    inbox: MemoryObjectSendStream[Event]
    _idle: list[_Fetcher] = attrs.field(factory=list)
    _fetchers: list[_Fetcher] = attrs.field(factory=list)
    _tick: int = 0
    _watchdog: anyio.CancelScope | None = None
    _closed: bool = False

    def submit(self, request: FetchInvites) -> None:
        if self._idle:
            fetcher = self._idle.pop()  # the most recently busy one
            fetcher.request = request
            fetcher.wake.set()
            return
        fetcher = _Fetcher()
        self._fetchers.append(fetcher)
        if self._watchdog is None:
            self._watchdog = anyio.CancelScope()
            self.tg.start_soon(self._watch, self._watchdog)
        self.tg.start_soon(self._run_fetcher, fetcher, request, self.inbox.clone())

    def close(self) -> None:
        """Let the fetchers end: idle ones now, busy ones once their fetch is answered or cut off. The
        watchdog ends with the last of them, so a fetch that hangs still ends within its timeout."""
        self._closed = True
        while self._idle:
            self._idle.pop().wake.set()
        self._end_watchdog_when_done()

    def _end_watchdog_when_done(self) -> None:
        if self._closed and not self._fetchers and self._watchdog is not None:
            self._watchdog.cancel()

    async def _watch(self, scope: anyio.CancelScope) -> None:
        with scope:
            while True:
                await anyio.sleep(self.timeout / _QUARTERS)
                self._tick = tick = self._tick + 1
                for fetcher in self._fetchers:
                    if fetcher.busy_since is not None and tick - fetcher.busy_since > _QUARTERS:
                        fetcher.scope.cancel()

    async def _run_fetcher(
        self, fetcher: _Fetcher, request: FetchInvites | None, inbox: MemoryObjectSendStream[Event]
    ) -> None:
        try:
            async with inbox:
                while request is not None:
                    request = await self._serve(fetcher, request, inbox)
        finally:
            self._fetchers.remove(fetcher)
            self._end_watchdog_when_done()

    async def _serve(
        self, fetcher: _Fetcher, request: FetchInvites | None, inbox: MemoryObjectSendStream[Event]
    ) -> FetchInvites | None:
        """Fetch requests in one cancel scope until the watchdog cuts one off; then answer it (a timeout,
        or the answer if it came as the watchdog struck) and return the next request (None: stop)."""
        answer: Event | None = None
        with fetcher.scope as scope:
            while request is not None:
                fetcher.busy_since = self._tick
                answer = await self.fetch(request)
                fetcher.busy_since = None
                if scope.cancel_called:
                    break  # cut off just as the answer came: send it outside the spent scope
                await send_soon(inbox, answer)
                answer = None
                request = await self._next(fetcher)
        fetcher.busy_since = None
        fetcher.scope = anyio.CancelScope()
        if request is None:
            return None
        await send_soon(inbox, answer if answer is not None else self.timed_out(request))
        return await self._next(fetcher)

    async def _next(self, fetcher: _Fetcher) -> FetchInvites | None:
        if self._closed:
            return None  # a fetch that was busy at close(): nothing more will come
        fetcher.wake = wake = anyio.Event()
        fetcher.request = None
        self._idle.append(fetcher)
        try:
            await wake.wait()
        except BaseException:
            if not wake.is_set():  # cancelled while idle: submit() and close() take it off when they set
                self._idle.remove(fetcher)
            raise
        return fetcher.request
