"""Group commit driven from the loop thread: a batch is handed over by the append that makes it or by the
completion of the one before, and a completion answers producers from a loop callback. These tests go after
the seams of that hand-over: appends that arrive while a completion is on its way, failures inside the
callback, the I/O thread's own contract, and a writer with nothing to do costing nothing."""

from __future__ import annotations

import os
import random
import threading
import time

import anyio
import pytest

from tests.wal.helpers import payloads
from wal.errors import WalClosedError, WalFatalError
from wal.fs import OsFileSystem
from wal.iothread import IoThread, Job
from wal.writer import WalWriter

pytestmark = pytest.mark.anyio


class NoSyncFileSystem(OsFileSystem):
    """Real writes, instant "fdatasync": commits complete within microseconds, so appends keep landing in
    the window between the I/O thread finishing a commit and the loop running its completion."""

    def fdatasync(self, fd: int) -> None:
        pass


class GatedSyncFileSystem(OsFileSystem):
    """Holds every fdatasync until the test opens the gate, and counts them."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.syncing = threading.Event()
        self.syncs = 0

    def fdatasync(self, fd: int) -> None:
        self.syncing.set()
        self.gate.wait()
        self.syncs += 1
        super().fdatasync(fd)


async def test_appends_racing_completions_are_all_answered_once_in_order(tmp_path):
    """Many rounds of producers appending at random moments against commits that complete at once: an
    append that finds a commit in flight must be taken by that commit's completion, never stranded."""
    rng = random.Random(7)
    for round_ in range(20):
        wal_dir = tmp_path / f"wal{round_}"
        writer = WalWriter(wal_dir, fs=NoSyncFileSystem(), queue_size=rng.choice([1, 4, 64]))
        results: list[int] = []

        async def producer(
            index: int, count: int, pause: float, writer: WalWriter = writer, results: list[int] = results
        ) -> None:
            for i in range(count):
                if rng.random() < 0.3:
                    await anyio.sleep(pause)  # let a completion slip in between appends
                results.append(await writer.append(1, f"{index}-{i}".encode()))

        with anyio.fail_after(30):  # a lost hand-over shows up as a hang
            async with anyio.create_task_group() as tg:
                await tg.start(writer.run)
                async with anyio.create_task_group() as producers:
                    for index in range(rng.randint(1, 12)):
                        producers.start_soon(producer, index, rng.randint(1, 60), rng.choice([0, 1e-5, 1e-4]))
                tg.cancel_scope.cancel()
        assert sorted(results) == list(range(1, len(results) + 1))
        assert len(payloads(wal_dir)) == len(results)


async def test_appends_queued_during_a_commit_go_out_together_when_it_completes(tmp_path):
    fs = GatedSyncFileSystem()
    writer = WalWriter(tmp_path / "wal", fs=fs)
    results: list[int] = []

    async def one(payload: bytes) -> None:
        results.append(await writer.append(1, payload))

    async with anyio.create_task_group() as tg:
        await tg.start(writer.run)
        tg.start_soon(one, b"first")
        await anyio.to_thread.run_sync(fs.syncing.wait)  # the first commit is in its fdatasync
        for i in range(10):
            tg.start_soon(one, f"queued {i}".encode())
        await anyio.sleep(0.05)
        assert results == []
        fs.gate.set()
        while len(results) < 11:
            await anyio.sleep(0.001)
        tg.cancel_scope.cancel()
    assert sorted(results) == list(range(1, 12))
    assert fs.syncs == 2  # the ten queued ones shared the commit that the first one's completion started


async def test_a_failure_while_answering_a_commit_stops_the_writer_and_leaves_nobody_waiting(
    tmp_path, monkeypatch
):
    writer = WalWriter(tmp_path / "wal")

    def broken_answer(*args: object) -> None:
        raise RuntimeError("bug in _answer")

    stopped: list[BaseException] = []

    async def run_writer(*, task_status: anyio.abc.TaskStatus[None]) -> None:
        try:
            await writer.run(task_status=task_status)
        except RuntimeError as exc:
            stopped.append(exc)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            await tg.start(run_writer)
            assert await writer.append(1, b"fine") == 1
            monkeypatch.setattr(writer, "_answer", broken_answer)
            with pytest.raises(WalFatalError, match="answering a commit"):
                await writer.append(1, b"answered with an error, not left hanging")
    assert len(stopped) == 1 and "bug in _answer" in str(stopped[0])
    with pytest.raises(WalClosedError):
        await writer.append(1, b"after")


async def test_an_unexpected_error_in_the_io_thread_fails_its_batch_and_stops_the_writer(tmp_path):
    class ExplodingFileSystem(OsFileSystem):
        armed = False  # not while the log is opened (the new segment's header is a pwrite too)

        def pwrite(self, fd: int, data: bytes, offset: int) -> int:
            if self.armed:
                raise RuntimeError("boom")
            return super().pwrite(fd, data, offset)

    fs = ExplodingFileSystem()
    writer = WalWriter(tmp_path / "wal", fs=fs)
    stopped: list[BaseException] = []

    async def run_writer(*, task_status: anyio.abc.TaskStatus[None]) -> None:
        try:
            await writer.run(task_status=task_status)
        except RuntimeError as exc:
            stopped.append(exc)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            await tg.start(run_writer)
            fs.armed = True
            with pytest.raises(WalFatalError, match="failed unexpectedly"):
                await writer.append(1, b"x")
    assert [str(e) for e in stopped] == ["boom"]


async def test_io_thread_runs_jobs_in_order_and_calls_back_on_the_loop_thread():
    io = IoThread()
    loop_thread = threading.get_ident()
    seen: list[tuple[int, int, bool]] = []
    all_done = anyio.Event()

    def on_done(job: Job[int]) -> None:
        seen.append((job.outcome(), threading.get_ident(), job.done))
        if len(seen) == 50:
            all_done.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(io.serve)
        ran_in: set[int] = set()

        def work(i: int) -> int:
            ran_in.add(threading.get_ident())
            return i

        for i in range(50):
            io.submit(work, (i,), on_done)
        with anyio.fail_after(10):
            await all_done.wait()
        assert await io.call(lambda: 99) == 99
        with pytest.raises(ZeroDivisionError):
            await io.call(lambda: 1 // 0)
        io.stop()
    io.close()
    assert [s[0] for s in seen] == list(range(50))
    assert {s[1] for s in seen} == {loop_thread} and all(s[2] for s in seen)
    assert ran_in and loop_thread not in ran_in


async def test_io_thread_call_is_shielded_from_cancellation():
    io = IoThread()
    finished = threading.Event()

    def slow() -> str:
        time.sleep(0.1)
        finished.set()
        return "done"

    results: list[str] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(io.serve)
        with anyio.move_on_after(0.01):
            results.append(await io.call(slow))
        assert finished.is_set()  # the call waited for the job although its scope was cancelled
        io.stop()
    io.close()
    assert results == ["done"]


def _cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


async def test_an_idle_writer_burns_no_cpu(tmp_path):
    """Neither the I/O thread nor the loop may poll while nothing is appended, also right after a burst."""
    writer = WalWriter(tmp_path / "wal")
    async with anyio.create_task_group() as tg:
        await tg.start(writer.run)
        for i in range(200):
            await writer.append(1, f"{i}".encode())
        before, started = _cpu_seconds(), time.monotonic()
        await anyio.sleep(1.0)
        used, elapsed = _cpu_seconds() - before, time.monotonic() - started
        tg.cancel_scope.cancel()
    # A poller would burn most of a core; an idle writer measures 0-30 ms here (os.times ticks are 10 ms,
    # and the test process may collect garbage meanwhile), so the bound leaves room for those and no more.
    assert used < 0.15 * elapsed, f"{used:.3f} s of CPU in {elapsed:.3f} s idle"
