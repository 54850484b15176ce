"""The attribution actor's fetcher pool: concurrent fetches, reused fetchers, timeouts, shutdown."""

from __future__ import annotations

from datetime import UTC, datetime

import anyio
import pytest

from service.attribution import FetchInvites
from service.events import Event, FetchFailed, InvitesFetched
from service.fetch_pool import FetchPool

pytestmark = pytest.mark.anyio

NOW = datetime(2026, 11, 24, tzinfo=UTC)


def answer(request: FetchInvites) -> Event:
    return InvitesFetched(request.guild_id, request.request_id, NOW, invites=())


def timed_out(request: FetchInvites) -> Event:
    return FetchFailed(request.guild_id, request.request_id, NOW, reason="TimeoutError")


def answered(event: Event) -> int:
    assert isinstance(event, InvitesFetched)
    return event.request_id


async def test_fetches_overlap_and_an_idle_fetcher_takes_the_next_request() -> None:
    release = anyio.Event()
    tasks: set[int] = set()
    running = 0
    most = 0

    async def fetch(request: FetchInvites) -> Event:
        nonlocal running, most
        tasks.add(anyio.get_current_task().id)
        running += 1
        most = max(most, running)
        if request.request_id <= 3:
            await release.wait()
        running -= 1
        return answer(request)

    send, receive = anyio.create_memory_object_stream[Event](16)
    async with anyio.create_task_group() as tg, send, receive:
        pool = FetchPool(fetch, timed_out, 5.0, tg, send)
        for rid in (1, 2, 3):
            pool.submit(FetchInvites(f"g{rid}", rid))
        await anyio.wait_all_tasks_blocked()
        assert most == 3  # no fetch waits for another guild's
        release.set()
        got = {answered(await receive.receive()) for _ in range(3)}
        assert got == {1, 2, 3}
        await anyio.wait_all_tasks_blocked()
        pool.submit(FetchInvites("g4", 4))
        assert answered(await receive.receive()) == 4
        assert len(tasks) == 3  # served by an idle fetcher, not a new one
        await anyio.wait_all_tasks_blocked()
        pool.close()  # idle fetchers end, so the task group can exit


async def test_a_fetch_that_overruns_its_timeout_is_answered_as_failed_and_the_fetcher_goes_on() -> None:
    async def fetch(request: FetchInvites) -> Event:
        if request.request_id == 1:
            await anyio.sleep_forever()
        return answer(request)

    send, receive = anyio.create_memory_object_stream[Event](16)
    async with anyio.create_task_group() as tg, send, receive:
        pool = FetchPool(fetch, timed_out, 0.05, tg, send)
        pool.submit(FetchInvites("g", 1))
        with anyio.fail_after(5):
            first = await receive.receive()
        assert isinstance(first, FetchFailed) and first.request_id == 1
        await anyio.wait_all_tasks_blocked()
        pool.submit(FetchInvites("g", 2))
        assert answered(await receive.receive()) == 2
        # Waiting idle longer than the timeout is not a timeout: the deadline covers fetches only.
        await anyio.sleep(0.15)
        pool.submit(FetchInvites("g", 3))
        assert answered(await receive.receive()) == 3
        await anyio.wait_all_tasks_blocked()
        pool.close()


async def test_slow_fetches_within_the_timeout_are_answered() -> None:
    async def fetch(request: FetchInvites) -> Event:
        await anyio.sleep(0.02)
        return answer(request)

    send, receive = anyio.create_memory_object_stream[Event](16)
    async with anyio.create_task_group() as tg, send, receive:
        pool = FetchPool(fetch, timed_out, 1.0, tg, send)
        for rid in range(1, 6):
            pool.submit(FetchInvites("g", rid))
            assert answered(await receive.receive()) == rid
            await anyio.wait_all_tasks_blocked()
        pool.close()


async def test_a_hung_fetch_is_cut_off_never_before_its_timeout_and_a_slow_one_is_answered() -> None:
    # The watchdog looks every quarter of the timeout; fetches start at every phase of its period.
    timeout = 0.2
    started: dict[int, float] = {}

    async def fetch(request: FetchInvites) -> Event:
        started[request.request_id] = anyio.current_time()
        if request.request_id % 2:
            await anyio.sleep(timeout * 0.7)  # within the timeout: answered
        else:
            await anyio.sleep_forever()  # hung: cut off
        return answer(request)

    send, receive = anyio.create_memory_object_stream[Event](16)
    async with anyio.create_task_group() as tg, send, receive:
        pool = FetchPool(fetch, timed_out, timeout, tg, send)
        for rid in range(1, 9):
            await anyio.sleep(timeout / 7)  # a different phase each time
            pool.submit(FetchInvites(f"g{rid}", rid))
            with anyio.fail_after(5):
                event = await receive.receive()
            assert event.request_id == rid
            elapsed = anyio.current_time() - started[rid]
            if rid % 2:
                assert isinstance(event, InvitesFetched)
            else:
                assert isinstance(event, FetchFailed)
                assert elapsed >= timeout
        await anyio.wait_all_tasks_blocked()
        pool.close()  # the watchdog ends too, so the task group can exit


async def test_after_close_a_busy_fetch_is_still_answered_or_cut_off_and_then_everything_ends() -> None:
    release = anyio.Event()

    async def fetch(request: FetchInvites) -> Event:
        if request.request_id == 1:
            await release.wait()  # slow, but answered
        else:
            await anyio.sleep_forever()  # hangs: only the watchdog ends it
        return answer(request)

    send, receive = anyio.create_memory_object_stream[Event](16)
    with anyio.fail_after(5):  # the task group exits: no fetcher and no watchdog left behind
        async with anyio.create_task_group() as tg, send, receive:
            pool = FetchPool(fetch, timed_out, 0.2, tg, send)
            pool.submit(FetchInvites("g1", 1))
            pool.submit(FetchInvites("g2", 2))
            pool.submit(FetchInvites("g3", 3))
            await anyio.wait_all_tasks_blocked()
            pool.close()
            release.set()
            got = {(await receive.receive()).request_id for _ in range(3)}
            assert got == {1, 2, 3}
