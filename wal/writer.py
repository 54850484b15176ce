"""The WAL writer: an anyio actor that owns the log's files and acknowledges a record only once it is durable.

Shape (as in apscheduler 4): `await tg.start(writer.run)` opens and repairs the log, calls
`task_status.started()` once the active segment is open, then serves appends until cancelled. Producers call
`await writer.append(record_type, payload)`; the request goes into a bounded memory object stream that only
the writer reads, and the call returns the record's LSN only after fdatasync returned.

Group commit without a timer: when no commit is in flight, the writer takes everything queued up to
`batch_bytes` and hands it to its I/O thread as one pwrite + one fdatasync. While that runs, new appends
queue up and form the next batch, taken the moment the previous one completes, so batches grow exactly as
fast as the disk is slow. (See `_serve` for why this is driven from the loop thread's callbacks.)

LSNs are assigned when a batch is formed, never before, so a batch that fails to write (disk full, EIO)
leaves no gap: its LSNs go to the next batch. A failed fdatasync is fatal; run() raises it.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import anyio
import anyio.abc
import anyio.lowlevel
from anyio.streams.memory import MemoryObjectReceiveStream

from wal.appender import CommitResult, SegmentAppender
from wal.codec import FRAME_HEADER_SIZE, MAX_PAYLOAD_BYTES, MAX_RECORD_TYPE
from wal.errors import WalClosedError, WalError, WalFatalError
from wal.fs import FileSystem, OsFileSystem
from wal.iothread import IoThread, Job
from wal.recover import RecoveryReport, open_log
from wal.segment import DEFAULT_SEGMENT_BYTES, SEGMENT_HEADER_SIZE, parse_segment_name
from wal.watermark import Watermark

DEFAULT_BATCH_BYTES = 1 * 2**20
DEFAULT_QUEUE_SIZE = 4096


class _Reply:
    """The one-shot reply one caller waits on: for one `append`, or for all the records of one
    `append_many` (one event per call, not per record: at thousands of records a second the events were
    ~4 % of the event loop's time)."""

    __slots__ = ("event", "waiting")

    def __init__(self, records: int) -> None:
        self.waiting = records  # records not answered yet
        self.event = anyio.Event()


class _PendingAppend:
    """One record's request and its answer. A plain slotted class: this is the per-record hot path."""

    __slots__ = ("answered", "error", "lsn", "payload", "record_type", "reply")

    def __init__(self, record_type: int, payload: bytes, reply: _Reply) -> None:
        self.record_type = record_type
        self.payload = payload
        self.reply = reply
        self.answered = False
        self.lsn = 0
        self.error: BaseException | None = None

    def answer(self, lsn: int, error: BaseException | None) -> None:
        """Record the outcome (an LSN, or the error that kept the record out); the caller wakes once every
        record it waits on is answered."""
        self.lsn = lsn
        self.error = error
        self.answered = True
        reply = self.reply
        reply.waiting -= 1
        if not reply.waiting:
            reply.event.set()


def _fresh(error: BaseException) -> BaseException:
    """A copy to raise in one waiting task: one exception object raised in many tasks would pile all
    their tracebacks onto it."""
    clone = copy.copy(error)
    clone.__cause__ = error.__cause__
    return clone


class WalWriter:
    def __init__(
        self,
        wal_dir: Path | str,
        *,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        batch_bytes: int = DEFAULT_BATCH_BYTES,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        preallocate: bool = True,
        fs: FileSystem | None = None,
        opened: RecoveryReport | None = None,
    ) -> None:
        """`opened`: what `open_log(wal_dir, repair=True)` just returned, when the caller opened the log
        itself (start-up recovery) and nothing can have changed it since (it holds the data directory's
        lock): the writer then starts from it instead of verifying every frame again."""
        if segment_bytes < SEGMENT_HEADER_SIZE + FRAME_HEADER_SIZE:
            raise ValueError(f"segment_bytes={segment_bytes} cannot hold a header and one frame")
        if batch_bytes < 1 or queue_size < 1:
            raise ValueError("batch_bytes and queue_size must be positive")
        self.wal_dir = Path(wal_dir)
        self.segment_bytes = segment_bytes
        self.batch_bytes = batch_bytes
        self.preallocate = preallocate
        self._fs: FileSystem = fs if fs is not None else OsFileSystem()
        self._send, self._receive = anyio.create_memory_object_stream[_PendingAppend](queue_size)
        #: Last LSN whose record is on disk (fdatasync returned).
        self.durable = Watermark(0)
        #: Last LSN of the newest sealed segment: what the backup shipper may take.
        self.sealed = Watermark(0)
        #: What opening the log found and repaired, once run() has started.
        self.last_recovery: RecoveryReport | None = None
        self._failure: BaseException | None = None
        self._ran = False
        self._active_prefix: tuple[Path, int, int, int] | None = None
        self._opened = opened
        # Group commit state, from run() on; only ever touched on the event loop thread.
        self._io: IoThread | None = None
        self._appender: SegmentAppender | None = None
        self._next_lsn = 0  # the LSN the next batch starts with
        self._taking = False  # batches may be handed to the I/O thread
        self._busy = False  # a commit is in the I/O thread, or answered and the next batch not yet taken
        self._in_flight = False  # a commit is in the I/O thread
        self._idle: anyio.Event | None = None  # set when the commit in flight has been answered
        self._wakeup: anyio.Event | None = None  # set when a commit has been answered, for the writer task
        self._crash: BaseException | None = None  # why a commit stopped the writer

    def durable_prefix(self) -> tuple[Path, int, int, int] | None:
        """(path, first LSN, last durable LSN, durable size) of the active segment, or None while it holds
        no record: what the backup shipper may copy off the machine before the segment is sealed. Cheap;
        read on the event loop."""
        return self._active_prefix

    def _note_active(self, path: Path | None, size: int, durable_lsn: int) -> None:
        if path is None:
            first = None
        elif self._active_prefix is not None and self._active_prefix[0] is path:
            first = self._active_prefix[1]  # the same segment as last commit: spare the name parse per ack
        else:
            first = parse_segment_name(path.name)
        if path is None or first is None or durable_lsn < first:
            self._active_prefix = None
        else:
            self._active_prefix = (path, first, durable_lsn, size)

    @property
    def failure(self) -> BaseException | None:
        """Why the writer stopped, if it stopped on an error."""
        return self._failure

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Open and repair the log, report started, then serve appends until cancelled.

        Raises WalCorruption/WalFormatError before starting if the log is damaged beyond a torn tail. On
        cancellation the batch already taken is written and answered, appends still queued are refused
        with WalClosedError, and the files are closed. A fatal error (failed fsync) is raised from here
        after the same clean-up; waiters on `durable` are then left to the supervisor, which stops.
        """
        if self._ran:
            raise RuntimeError("a WalWriter runs once; make a new one to reopen the log")
        self._ran = True
        io = IoThread()
        appender = SegmentAppender(
            self.wal_dir, self._fs, segment_bytes=self.segment_bytes, preallocate=self.preallocate
        )
        failure: Exception | None = None
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(io.serve)
                try:
                    report = await io.call(self._open, appender)
                    self.last_recovery = report
                    self.durable.advance(report.last_lsn)
                    sealed = [s.last_lsn for s in report.segments[:-1] if s.last_lsn is not None]
                    self.sealed.advance(max(sealed, default=0))
                    active = report.active_segment
                    if active is not None:
                        self._note_active(active.path, active.valid_size, report.last_lsn)
                    self._io, self._appender, self._next_lsn = io, appender, report.last_lsn + 1
                    self._wakeup = anyio.Event()
                    self._taking = True
                    self._kick()  # appends queued while the log was being opened
                    task_status.started()
                    await self._serve()
                except Exception as exc:
                    # Raised below, outside the task group, so the caller sees the WalError itself rather
                    # than an ExceptionGroup wrapping it.
                    failure = exc
                finally:
                    with anyio.CancelScope(shield=True):
                        await self._drain()
                        await io.call(appender.close)
                    io.stop()
        finally:
            self._failure = failure
            self._refuse_queued()
            io.close()
        if failure is not None:
            raise failure

    def _open(self, appender: SegmentAppender) -> RecoveryReport:
        report, self._opened = self._opened, None
        if report is None or not report.repaired or report.wal_dir != self.wal_dir:
            report = open_log(self.wal_dir, repair=True, fs=self._fs)
        appender.open(report)
        return report

    async def append(self, record_type: int, payload: bytes) -> int:
        """Append one record; return its LSN once it is durable.

        Raises WalWriteError if its batch could not be written (not in the log; appending again is safe),
        WalFatalError/WalFsyncError if the writer failed (outcome unknown until restart recovery), and
        WalClosedError if the writer is not running. If the caller is cancelled while waiting, the record
        may still be written: cancellation, like a timeout, leaves the outcome unknown.
        """
        if not 1 <= record_type <= MAX_RECORD_TYPE:
            raise ValueError(f"record type must be in 1..{MAX_RECORD_TYPE}, got {record_type}")
        if type(payload) is not bytes:
            payload = bytes(payload)  # the I/O thread reads it later: a mutable buffer could change under it
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise ValueError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}")
        reply = _Reply(1)
        pending = _PendingAppend(record_type, payload, reply)
        try:
            try:
                self._send.send_nowait(pending)  # the common case: no extra trip through the event loop
            except anyio.WouldBlock:
                await self._send.send(pending)  # the queue is full: wait for room (backpressure)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            raise WalClosedError(
                "the WAL writer is not running; the record was not written"
            ) from self._failure
        self._kick()  # when the writer is idle, this record goes to the I/O thread right now
        await reply.event.wait()
        if pending.error is not None:
            raise _fresh(pending.error)
        return pending.lsn

    async def append_many(self, records: Sequence[tuple[int, bytes]]) -> list[int]:
        """Append records in this order; return their LSNs once all are durable.

        The records are queued back to back, so their LSNs are consecutive in the caller's order and they
        usually share one group commit: a producer that decides many records at once (a burst of joins)
        pays one fdatasync, not one each. Errors as for `append`; if a batch fails part-way, the records
        before the failed one may be durable and the error is raised.
        """
        pending: list[_PendingAppend] = []
        reply = _Reply(len(records))
        for record_type, payload in records:
            if not 1 <= record_type <= MAX_RECORD_TYPE:
                raise ValueError(f"record type must be in 1..{MAX_RECORD_TYPE}, got {record_type}")
            if type(payload) is not bytes:
                payload = bytes(payload)
            if len(payload) > MAX_PAYLOAD_BYTES:
                raise ValueError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}")
            pending.append(_PendingAppend(record_type, payload, reply))
        try:
            for item in pending:
                try:
                    self._send.send_nowait(item)
                except anyio.WouldBlock:
                    # The queue is full: wait for room. Other producers may slip in meanwhile, so our LSNs
                    # stay in our order but need not be consecutive then.
                    self._kick()
                    await self._send.send(item)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            raise WalClosedError(
                "the WAL writer is not running; the records were not written"
            ) from self._failure
        self._kick()  # after queueing them all, so they share one commit when the disk is idle
        if reply.waiting:  # already answered: waiting on a set event would still cost a loop step
            await reply.event.wait()
        for item in pending:
            if item.error is not None:
                error = _fresh(item.error)
                # The records may have been split over several group commits: say which ones are durable
                # (LSN by position, 0 for not written), so a caller that retries writes only the rest.
                error.durable_lsns = [0 if p.error is not None else p.lsn for p in pending]  # type: ignore[attr-defined]
                raise error
        return [item.lsn for item in pending]

    async def _serve(self) -> None:
        """Take the next batch each time a commit has been answered; raise when one failed fatally.

        Who does what, all on the event loop thread:

        * an append when the writer is idle (no commit in flight or being answered) hands its record to the
          I/O thread itself, in the same step (`_kick`): nothing else is queued, so there is nothing to
          wait for;
        * the I/O thread's completion runs `_committed` as a loop callback, which answers the producers at
          once;
        * then this task, woken by the same callback, takes everything queued meanwhile as the next batch.
          It runs after the producers just answered, which append again and so join that batch: with 64
          producers each commit carries all 64. Taking the next batch inside the callback instead split
          them into two alternating half-batches and cost ~25 % of throughput. When the commit held one
          record and nothing else is queued there is nobody to gather, so the callback leaves the writer
          idle and the lone producer's next append hands itself over.

        Before, every commit went completion → this task → producer → this task → I/O thread: four loop
        iterations where there are now two, and the event loop's CPU per acknowledgement of one producer
        fell from 87-124 µs to 47-75 µs on the benchmark VM. The acknowledgement latency did not move
        measurably: it is set by two cross-thread wake-ups of 16-57 µs each on that VM and an fdatasync
        that slows when the disk idles between requests (see benchmarks/RESULTS.md).
        """
        assert self._wakeup is not None
        while True:
            await self._wakeup.wait()
            self._wakeup = anyio.Event()
            if self._crash is not None:
                raise self._crash
            # One more scheduling round before taking the batch, so the producers the callback just
            # answered have appended again whatever order the backend runs woken tasks in (trio may run
            # this task first: without the round its batches fell to 42 of 64 records, throughput -30 %).
            await anyio.lowlevel.checkpoint()
            self._busy = False
            self._kick()

    def _kick(self) -> None:
        """Hand what is queued, up to the byte cap, to the I/O thread as one write + one fdatasync, unless
        the writer is busy with a commit (this task calls it again once that one is answered: that is the
        group commit, batches grow as fast as the disk is slow) or is not taking batches (not started yet,
        or stopping)."""
        if self._busy or not self._taking:
            return
        receive = self._receive
        cap = self.batch_bytes
        batch: list[_PendingAppend] = []
        size = 0
        while size < cap:
            try:
                item = receive.receive_nowait()
            except anyio.WouldBlock:
                break
            batch.append(item)
            size += FRAME_HEADER_SIZE + len(item.payload)
        if not batch:
            return
        assert self._io is not None and self._appender is not None
        records = [(p.record_type, p.payload) for p in batch]
        first = self._next_lsn  # LSNs are assigned here, so a batch that fails leaves no gap
        self._busy = self._in_flight = True
        self._io.submit(self._appender.commit, (first, records), partial(self._committed, batch, first))

    def _committed(self, batch: list[_PendingAppend], first_lsn: int, job: Job[CommitResult]) -> None:
        """The I/O thread finished a commit: answer its appends and wake the writer task to take the next
        batch. A bare callback on the loop thread (see IoThread.submit): whatever goes wrong stops the
        writer instead of escaping."""
        self._in_flight = False
        try:
            if job.error is not None:  # a bug or a simulated crash in the I/O thread: nothing is known
                error = WalFatalError(f"the WAL writer's I/O failed unexpectedly: {job.error!r}")
                error.__cause__ = job.error
                self._refuse(batch, error)
                self._stop(job.error)
                return
            result = job.outcome()
            self._next_lsn = result.durable_lsn + 1
            if result.fatal:
                assert result.error is not None
                self._stop(result.error)
            self._answer(batch, first_lsn, result)
        except BaseException as exc:  # a bug here: stop, and leave nobody of this batch waiting
            error = WalFatalError(f"the WAL writer failed answering a commit: {exc!r}")
            error.__cause__ = exc
            self._refuse([p for p in batch if not p.answered], error)
            self._stop(exc)
        finally:
            if len(batch) == 1 and self._crash is None and not self._receive.statistics().current_buffer_used:
                # A lone producer: nobody to gather, so its next append may go to the I/O thread itself,
                # without waiting for the writer task's step (~7 µs on the benchmark VM).
                self._busy = False
            elif self._wakeup is not None:
                self._wakeup.set()
            if self._idle is not None:
                self._idle.set()

    @staticmethod
    def _refuse(batch: list[_PendingAppend], error: BaseException) -> None:
        for pending in batch:
            pending.answer(0, error)

    def _stop(self, crash: BaseException) -> None:
        """No more batches; the writer task raises `crash` (the first one, if several)."""
        self._taking = False
        if self._crash is None:
            self._crash = crash

    async def _drain(self) -> None:
        """Take no more batches, and wait until the one in flight, if any, is written and answered."""
        self._taking = False
        while self._in_flight:
            self._idle = anyio.Event()
            await self._idle.wait()

    def _answer(self, batch: list[_PendingAppend], first_lsn: int, result: CommitResult) -> None:
        acknowledged = result.durable_lsn - first_lsn + 1
        if acknowledged > 0:
            self.durable.advance(result.durable_lsn)
        if result.sealed_lsn is not None:
            self.sealed.advance(result.sealed_lsn)
        if result.active_path is not None:
            self._note_active(result.active_path, result.active_size, self.durable.value)
        lsn = first_lsn
        for pending in batch[:acknowledged]:
            pending.answer(lsn, None)
            lsn += 1
        if acknowledged < len(batch):
            error = result.error or WalError("batch not written")
            for pending in batch[max(acknowledged, 0) :]:
                pending.answer(0, error)

    def _refuse_queued(self) -> None:
        """Answer appends still queued and close the stream, so later appends fail at once. Runs with no
        await in between, so nothing can slip into the queue after it was emptied."""
        error = WalClosedError("the WAL writer stopped before taking this record; it was not written")
        error.__cause__ = self._failure
        receive: MemoryObjectReceiveStream[_PendingAppend] = self._receive
        while True:
            try:
                pending = receive.receive_nowait()
            except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                break
            pending.answer(0, error)
        receive.close()
