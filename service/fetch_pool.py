"""The attribution actor's fetcher tasks: invite fetches run concurrently, answers go to the actor's inbox.

The core asks for at most one fetch per guild at a time, so fetches of different guilds overlap (a real one
takes a network round trip). A task per fetch cost a task, a cancel scope and a stream clone each time (a
tenth of the event loop's time per join when nearly every join needs a fetch); here a request goes to an
idle fetcher, and a new fetcher starts only when none is idle. So there are as many fetchers as fetches
ever ran at once, never more than there are guilds, and they wait idle for the next request.

Each fetch runs under a timeout. A fetcher keeps one cancel scope across its fetches and moves its deadline
(to `timeout` from now while a fetch runs, to never while it waits), which costs a timer instead of a
scope per fetch; a fetch that overruns spends the scope, and the fetcher goes on in a new one.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable

import anyio
import attrs
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectSendStream

from service.attribution import FetchInvites
from service.events import Event
from service.streams import send_soon


@attrs.define(eq=False)
class _Idle:
    wake: anyio.Event = attrs.field(factory=anyio.Event)
    request: FetchInvites | None = None  # None when woken: stop


@attrs.define(eq=False)
class FetchPool:
    #: Performs one fetch and returns the event to feed back (an answer, a rate limit or a failure).
    fetch: Callable[[FetchInvites], Awaitable[Event]]
    #: The event to feed back for a fetch that took longer than `timeout` seconds.
    timed_out: Callable[[FetchInvites], Event]
    timeout: float
    tg: TaskGroup
    inbox: MemoryObjectSendStream[Event]
    _idle: list[_Idle] = attrs.field(factory=list)

    def submit(self, request: FetchInvites) -> None:
        if self._idle:
            idle = self._idle.pop()  # the most recently busy one
            idle.request = request
            idle.wake.set()
        else:
            self.tg.start_soon(self._fetcher, request, self.inbox.clone())

    def close(self) -> None:
        """Let idle fetchers end (busy ones end after their fetch)."""
        while self._idle:
            self._idle.pop().wake.set()

    async def _fetcher(self, request: FetchInvites | None, inbox: MemoryObjectSendStream[Event]) -> None:
        async with inbox:
            while request is not None:
                request = await self._serve(request, inbox)

    async def _serve(
        self, request: FetchInvites | None, inbox: MemoryObjectSendStream[Event]
    ) -> FetchInvites | None:
        """Fetch requests in one cancel scope until one overruns its deadline; then answer it (a timeout,
        or the answer if it came as the deadline passed) and return the next request (None: stop)."""
        answer: Event | None = None
        with anyio.CancelScope() as scope:
            while request is not None:
                scope.deadline = anyio.current_time() + self.timeout
                answer = await self.fetch(request)
                scope.deadline = math.inf
                if scope.cancel_called:
                    break  # the deadline passed just as the answer came: send it outside the spent scope
                await send_soon(inbox, answer)
                answer = None
                request = await self._next()
        if request is None:
            return None
        await send_soon(inbox, answer if answer is not None else self.timed_out(request))
        return await self._next()

    async def _next(self) -> FetchInvites | None:
        idle = _Idle()
        self._idle.append(idle)
        try:
            await idle.wake.wait()
        finally:
            if idle in self._idle:  # cancelled while idle
                self._idle.remove(idle)
        return idle.request
