"""One long-lived worker thread that runs an actor's blocking calls in order, off the event loop.

Why not `anyio.to_thread.run_sync` per call: on the benchmark machine each such call costs ~100 µs (a
checkpoint, a capacity limiter, a thread-pool hand-off and a wake-up through the loop's call queue) against a
~100-150 µs fdatasync, and the writer makes one call per group commit, so at one producer that overhead was
most of the acknowledgement latency beyond the disk. Here the thread is started once with
`anyio.to_thread.run_sync`, and:

* to the thread: the job goes on a deque and a byte into a pipe the thread blocks on. `os.write` releases the
  GIL, so the woken thread can take it at once and get to its pwrite; waking it through a
  `queue.SimpleQueue` instead left it waiting for the GIL until the event loop went to sleep (measured with
  no I/O at all: 55 µs per round trip against 24 µs). `submit` is a plain function, so the job can be
  handed over from wherever the loop thread learns of it (a producer's append, the previous job's
  completion) without a trip through a task first;
* back: the thread schedules the job's `on_done` callback on the event loop with the backend's own
  thread-safe hook (asyncio `call_soon_threadsafe`, trio `TrioToken.run_sync_soon`), which writes the
  loop's wake-up fd. The callback runs on the loop thread in the same loop iteration that wakes up, so it
  can answer the waiting producers directly. Waiting on a pipe of our own with `anyio.wait_readable`
  instead costs two epoll_ctl calls and one more loop iteration per job before any task runs.

The thread never spins: measured on the 2-vCPU VM, a thread that polls for the next job (time.sleep(0)
between looks at the deque) slows the round trip without I/O from 17 to 75-82 µs, because each look needs
the GIL back while the event loop is running Python, so the poller keeps blocking on the GIL (a futex
sleep and wake-up each time) and the loop keeps waiting for it in turn.

Works the same on asyncio and trio.
"""

from __future__ import annotations

import asyncio
import collections
import os
from collections.abc import Callable
from typing import Any, Generic, TypeVar, cast

import anyio
import anyio.to_thread

T = TypeVar("T")


class Job(Generic[T]):
    """One blocking call and its outcome; `on_done(job)` runs on the event loop thread once it is known."""

    __slots__ = ("args", "done", "error", "func", "on_done", "result")

    def __init__(
        self, func: Callable[..., T], args: tuple[Any, ...], on_done: Callable[[Job[T]], None]
    ) -> None:
        self.func = func
        self.args = args
        self.on_done = on_done
        self.result: T | None = None
        self.error: BaseException | None = None
        self.done = False

    def run(self) -> None:
        try:
            self.result = self.func(*self.args)
        except BaseException as exc:  # handed to on_done on the loop, which decides what it means
            self.error = exc
        self.done = True

    def finish(self) -> None:
        self.on_done(self)

    def outcome(self) -> T:
        """The result, or the exception re-raised."""
        if self.error is not None:
            raise self.error
        return cast(T, self.result)  # run() set it, since there was no error


def _loop_scheduler() -> Callable[[Callable[[], object]], object]:
    """The current event loop's thread-safe "run this callback soon" hook."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # not asyncio: anyio's other backend
        import trio

        return trio.lowlevel.current_trio_token().run_sync_soon
    return loop.call_soon_threadsafe


class IoThread:
    """Run `serve` in a task (it occupies one worker thread until `stop`), then `submit` jobs or
    `await call(...)`. Everything but the thread's own loop runs on the event loop thread."""

    def __init__(self) -> None:
        self._jobs: collections.deque[Job[Any] | None] = collections.deque()  # append/popleft: thread-safe
        self._job_read, self._job_write = os.pipe()  # one byte per job, read by the thread (blocking)
        self._schedule: Callable[[Callable[[], object]], object] | None = None
        self._closed = False

    async def serve(self) -> None:
        """The thread's lifetime: returns once `stop()` was called and every earlier job has run and had
        its `on_done` scheduled."""
        self._schedule = _loop_scheduler()
        # Its own limiter: a thread held for the actor's whole life must not take a slot from, or wait
        # for, the shared default pool of worker threads.
        await anyio.to_thread.run_sync(self._serve, limiter=anyio.CapacityLimiter(1))

    def _serve(self) -> None:
        schedule = self._schedule
        assert schedule is not None
        while True:
            os.read(self._job_read, 1)
            job = self._jobs.popleft()
            if job is None:
                return
            job.run()
            # serve() (and so the event loop) outlives every job: run() waits for this thread before it
            # returns, so the loop is still there to take the callback.
            schedule(job.finish)

    def submit(
        self, func: Callable[..., T], args: tuple[Any, ...], on_done: Callable[[Job[T]], None]
    ) -> None:
        """Queue `func(*args)` for the thread; `on_done(job)` runs later on the event loop thread. Only
        from the loop thread, and only after `serve` has started (it learns the loop there).

        `on_done` runs as a bare callback outside any task: it must not raise (asyncio would only log it,
        trio would crash the run) and must not await.
        """
        if self._closed:
            raise RuntimeError("IoThread is closed")
        self._jobs.append(Job(func, args, on_done))
        os.write(self._job_write, b"\x00")

    async def call(self, func: Callable[..., T], *args: Any) -> T:
        """Run `func(*args)` in the thread and return its result (or raise its exception).

        Shielded from cancellation: the job runs to its end in the thread whatever this task does, and its
        outcome (which bytes are durable) must be known before the caller may answer anyone.
        """
        finished = anyio.Event()
        box: list[Job[T]] = []

        def on_done(job: Job[T]) -> None:
            box.append(job)
            finished.set()

        self.submit(func, args, on_done)
        with anyio.CancelScope(shield=True):
            await finished.wait()
        return box[0].outcome()

    def stop(self) -> None:
        """Let the thread finish its queue and exit."""
        self._jobs.append(None)
        os.write(self._job_write, b"\x00")

    def close(self) -> None:
        """Release the pipe; only after `serve` has returned."""
        if not self._closed:
            self._closed = True
            os.close(self._job_read)
            os.close(self._job_write)
