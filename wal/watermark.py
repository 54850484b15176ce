"""A monotonically rising integer that tasks can wait on: the durable LSN, the sealed LSN, the applied LSN.

Backend-neutral (anyio events). Owned by the event loop thread: `advance` is called from tasks, never from
worker threads.
"""

from __future__ import annotations

import heapq
import itertools

import anyio
import anyio.lowlevel


class Watermark:
    def __init__(self, value: int = 0) -> None:
        self._value = value
        # (target, tie-breaker, event); popped as the value reaches each target. A cancelled waiter leaves
        # its entry behind until then: setting an event nobody waits on is harmless, and values only rise.
        self._waiters: list[tuple[int, int, anyio.Event]] = []
        self._counter = itertools.count()

    @property
    def value(self) -> int:
        return self._value

    def advance(self, value: int) -> None:
        """Raise the mark to `value`; a value at or below the current one changes nothing."""
        if value <= self._value:
            return
        self._value = value
        waiters = self._waiters
        while waiters and waiters[0][0] <= value:
            heapq.heappop(waiters)[2].set()

    # The timeout parameter is the contract other rooms build against (read-your-writes with a deadline).
    async def wait_for(self, value: int, timeout: float | None = None) -> int:  # noqa: ASYNC109
        """Wait until the mark is at least `value`; return the mark. Raises TimeoutError after `timeout`."""
        if self._value >= value:
            await anyio.lowlevel.checkpoint()
            return self._value
        event = anyio.Event()
        heapq.heappush(self._waiters, (value, next(self._counter), event))
        with anyio.fail_after(timeout):
            await event.wait()
        return self._value

    def __repr__(self) -> str:
        return f"Watermark({self._value}, waiters={len(self._waiters)})"
