"""One long-lived worker thread that runs an actor's blocking calls in order, off the event loop.

Why not `anyio.to_thread.run_sync` per call: on the benchmark machine each such call costs ~100 µs (a
checkpoint, a capacity limiter, a thread-pool hand-off and a wake-up through the loop's call queue) against a
~100-150 µs fdatasync, and the writer makes one call per group commit, so at one producer that overhead was
most of the acknowledgement latency beyond the disk. Here the thread is started once with
`anyio.to_thread.run_sync` and both directions are a one-byte write to a pipe:

* to the thread: the job goes on a deque and a byte into a pipe the thread blocks on. `os.write` releases the
  GIL, so the woken thread can take it at once and get to its pwrite; waking it through a
  `queue.SimpleQueue` instead left it waiting for the GIL until the event loop went to sleep (measured with
  no I/O at all: 55 µs per round trip against 24 µs);
* back: a byte into a pipe the event loop waits on with `anyio.wait_readable`, so the thread never calls
  into the loop or blocks on it.

Works the same on asyncio and trio.
"""

from __future__ import annotations

import collections
import os
from collections.abc import Callable
from typing import Any, Generic, TypeVar, cast

import anyio
import anyio.to_thread

T = TypeVar("T")


class _Job(Generic[T]):
    __slots__ = ("args", "done", "error", "func", "result")

    def __init__(self, func: Callable[..., T], args: tuple[Any, ...]) -> None:
        self.func = func
        self.args = args
        self.result: T | None = None
        self.error: BaseException | None = None
        self.done = False

    def run(self) -> None:
        try:
            self.result = self.func(*self.args)
        except BaseException as exc:  # handed to the waiting task, which re-raises it
            self.error = exc
        self.done = True


class IoThread:
    """Run `serve` in a task (it occupies one worker thread until `stop`), then `await call(...)`."""

    def __init__(self) -> None:
        self._jobs: collections.deque[_Job[Any] | None] = collections.deque()  # append/popleft: thread-safe
        self._job_read, self._job_write = os.pipe()  # one byte per job, read by the thread (blocking)
        self._wake_read, self._wake_write = os.pipe()  # one byte per finished job, read by the loop
        os.set_blocking(self._wake_read, False)
        self._busy = False
        self._closed = False

    async def serve(self) -> None:
        """The thread's lifetime: returns once `stop()` was called and every earlier job has run."""
        # Its own limiter: a thread held for the actor's whole life must not take a slot from, or wait
        # for, the shared default pool of worker threads.
        await anyio.to_thread.run_sync(self._serve, limiter=anyio.CapacityLimiter(1))

    def _serve(self) -> None:
        while True:
            os.read(self._job_read, 1)
            job = self._jobs.popleft()
            if job is None:
                return
            job.run()
            os.write(self._wake_write, b"\x00")

    async def call(self, func: Callable[..., T], *args: Any) -> T:
        """Run `func(*args)` in the thread and return its result (or raise its exception).

        Shielded from cancellation: the job runs to its end in the thread whatever this task does, and its
        outcome (which bytes are durable) must be known before the caller may answer anyone.
        """
        if self._busy:
            raise RuntimeError("IoThread.call is for one task at a time")
        if self._closed:
            raise RuntimeError("IoThread is closed")
        job: _Job[T] = _Job(func, args)
        self._busy = True
        try:
            self._jobs.append(job)
            os.write(self._job_write, b"\x00")
            with anyio.CancelScope(shield=True):
                while not job.done:
                    await anyio.wait_readable(self._wake_read)
                    try:
                        os.read(self._wake_read, 64)
                    except BlockingIOError:
                        pass  # a spurious wake-up; the job is still running
        finally:
            self._busy = False
        if job.error is not None:
            raise job.error
        return cast(T, job.result)  # run() set it, since there was no error

    def stop(self) -> None:
        """Let the thread finish its queue and exit."""
        self._jobs.append(None)
        os.write(self._job_write, b"\x00")

    def close(self) -> None:
        """Release the pipes; only after `serve` has returned."""
        if not self._closed:
            self._closed = True
            for fd in (self._job_read, self._job_write, self._wake_read, self._wake_write):
                os.close(fd)
