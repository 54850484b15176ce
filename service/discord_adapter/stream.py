"""The adapter's outbound event stream: bounded, in arrival order, and never dropping an event.

interactions.py runs every listener as its own asyncio task, so a listener that awaited before handing its
event over could be overtaken by the next one. Listeners therefore call `put` synchronously, first thing:
tasks start in the order they were created, so events enter the stream in the order the gateway delivered
them.

When the consumer (the attribution actor) falls behind and the bounded buffer is full, an event is not
dropped (a lost join is the one thing the ledger may never do) and not sent out of turn: it waits in an
ordered overflow that one pump task moves into the stream with an awaiting send, and every later event
queues behind it until the overflow is empty. There is no way to push back on Discord (the library reads
the gateway and spawns listener tasks regardless), so the overflow is where that pressure shows: it is
counted and logged, and `buffer` is sized so that it stays empty in practice.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Generic, TypeVar

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from service.logs import log_event

log = logging.getLogger(__name__)

T = TypeVar("T")


class OrderedStream(Generic[T]):
    def __init__(self, buffer: int) -> None:
        self._send: MemoryObjectSendStream[T]
        self._receive: MemoryObjectReceiveStream[T]
        self._send, self._receive = anyio.create_memory_object_stream[T](buffer)
        self._overflow: deque[T] = deque()
        self._wake = anyio.Event()
        self._closed = False
        self.overflowed = 0  # events that went through the overflow (a sign `buffer` is too small)
        self.max_overflow = 0

    @property
    def receive(self) -> MemoryObjectReceiveStream[T]:
        return self._receive

    @property
    def backlog(self) -> int:
        return self._send.statistics().current_buffer_used + len(self._overflow)

    def put(self, item: T) -> None:
        """Hand an event over without awaiting (call it before any await in a listener)."""
        if self._closed:
            return  # shutting down: nobody will read it, and the log is not affected
        if not self._overflow:
            try:
                self._send.send_nowait(item)
                return
            except anyio.WouldBlock:
                log_event(log, "gateway_events_overflow", level=logging.WARNING, buffer=self.buffer_size)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                self._closed = True
                return
        self._overflow.append(item)
        self.overflowed += 1
        self.max_overflow = max(self.max_overflow, len(self._overflow))
        self._wake.set()

    @property
    def buffer_size(self) -> float:
        return self._send.statistics().max_buffer_size

    async def pump(self) -> None:
        """Move overflowed events into the stream, in order; runs for as long as the adapter runs."""
        while True:
            if not self._overflow:
                self._wake = anyio.Event()
                await self._wake.wait()
                continue
            try:
                await self._send.send(self._overflow[0])
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                self._closed = True
                self._overflow.clear()
                return
            self._overflow.popleft()
            if not self._overflow:
                log_event(log, "gateway_events_overflow_drained", level=logging.INFO)

    def close(self) -> None:
        self._closed = True
        self._send.close()
