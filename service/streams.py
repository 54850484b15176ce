"""Memory object stream hand-offs that do not yield when they need not.

anyio's `send()` and `receive()` always yield to the scheduler first, even when they can complete at once:
a full round of the event loop per item and per hop. In the attribution actor (gateway → pump → inbox →
core → appender, and every fetch answer) that was a quarter of the loop's time per join. These complete at
once when they can and wait only when they must; the streams stay bounded and in order, and every wait is
still a cancellation point. A loop that only ever takes what is ready must still yield now and then
(`AttributionActor.run` does, every `DECIDE_RUN` events).
"""

from __future__ import annotations

from typing import TypeVar

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

T = TypeVar("T")


async def send_soon(stream: MemoryObjectSendStream[T], item: T) -> None:
    try:
        stream.send_nowait(item)
    except anyio.WouldBlock:
        await stream.send(item)


async def receive_soon(stream: MemoryObjectReceiveStream[T]) -> T:
    try:
        return stream.receive_nowait()
    except anyio.WouldBlock:
        return await stream.receive()
