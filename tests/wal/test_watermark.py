from __future__ import annotations

import anyio
import pytest

from wal.watermark import Watermark

pytestmark = pytest.mark.anyio


async def test_the_mark_only_rises():
    mark = Watermark(5)
    mark.advance(3)
    assert mark.value == 5
    mark.advance(9)
    assert mark.value == 9


async def test_waiters_wake_when_their_value_is_reached_and_not_before():
    mark = Watermark()
    woke: list[tuple[int, int]] = []

    async def waiter(target: int) -> None:
        woke.append((target, await mark.wait_for(target)))

    async with anyio.create_task_group() as tg:
        for target in (3, 1, 2, 5):
            tg.start_soon(waiter, target)
        await anyio.sleep(0.01)
        mark.advance(2)
        await anyio.sleep(0.01)
        assert sorted(woke) == [(1, 2), (2, 2)]
        mark.advance(4)
        await anyio.sleep(0.01)
        assert sorted(t for t, _ in woke) == [1, 2, 3]
        mark.advance(7)
    assert sorted(woke) == [(1, 2), (2, 2), (3, 4), (5, 7)]


async def test_a_reached_value_returns_at_once_and_a_timeout_raises():
    mark = Watermark(10)
    assert await mark.wait_for(10) == 10
    with pytest.raises(TimeoutError):
        await mark.wait_for(11, timeout=0.02)
    mark.advance(11)  # the timed-out waiter left an entry behind; advancing past it is harmless
    assert await mark.wait_for(11, timeout=0.02) == 11
