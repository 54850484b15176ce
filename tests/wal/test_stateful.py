"""A real log beside a simple model, through appends, rollovers, disk errors, crashes and restarts.

Shaped like hypothesis's own tests/nocover/test_database_agreement.py. The log runs on a
`PowerLossFileSystem`, so a crash forgets exactly what was never fdatasynced: whole writes, torn
sectors, a cut at a random byte, or garbage, in the unsynced region only. After every restart:

* the recovered log has no LSN gap (iter_frames raises on one),
* it contains every acknowledged record at the LSN it was acknowledged with,
* everything else in it is a record that was written and whose outcome was unknown (a prefix of what was
  written): never one that was refused with WalWriteError, never one that a previous recovery dropped.
"""

from __future__ import annotations

import errno
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule, run_state_machine_as_test

from wal.errors import WalClosedError, WalWriteError
from wal.fs import FaultyFileSystem
from wal.powerloss import LossPolicy, PowerLossFileSystem
from wal.reader import iter_frames
from wal.writer import WalWriter

# Durability here is the PowerLossFileSystem's model, not the disk's, so the files may as well live in
# memory when the machine has a tmpfs: real fsyncs would only make the test slow.
ROOT = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())


async def append_all(writer: WalWriter, items: list[bytes]) -> list[int | BaseException]:
    results: list[int | BaseException] = [0] * len(items)

    async def one(i: int, payload: bytes) -> None:
        try:
            results[i] = await writer.append(1, payload)
        except Exception as exc:
            results[i] = exc

    async with anyio.create_task_group() as tg:
        for i, payload in enumerate(items):
            tg.start_soon(one, i, payload)
    return results


class WalMachine(RuleBasedStateMachine):
    backend = "asyncio"

    def __init__(self) -> None:
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="wal-stateful-", dir=ROOT))
        self.wal_dir = self.root / "wal"
        self.portal_cm = start_blocking_portal(self.backend)
        self.portal: BlockingPortal = self.portal_cm.__enter__()
        self.acked: dict[int, bytes] = {}
        self.unknown: set[bytes] = set()  # taken by a writer that then crashed: may or may not be in the log
        self.gone: set[bytes] = set()  # refused, or dropped by a recovery: must never appear
        self.counter = 0
        self.writer: WalWriter | None = None
        self.scope: anyio.CancelScope | None = None
        self.running: Any = None

    # -- the writer's life -------------------------------------------------------------------------

    @initialize(segment_bytes=st.sampled_from([120, 200, 333, 1024]), preallocate=st.booleans())
    def start(self, segment_bytes: int, preallocate: bool) -> None:
        self.segment_bytes = segment_bytes
        self.preallocate = preallocate
        self._start()

    def _start(self) -> None:
        self.faulty = FaultyFileSystem()
        self.fs = PowerLossFileSystem(self.wal_dir, inner=self.faulty)
        self.writer, self.scope = self.portal.call(self._make_writer)  # both belong to the event loop
        self.running, _ = self.portal.start_task(self._run_writer, self.writer, self.scope)
        self._check_recovered()

    def _make_writer(self) -> tuple[WalWriter, anyio.CancelScope]:
        writer = WalWriter(
            self.wal_dir,
            segment_bytes=self.segment_bytes,
            batch_bytes=150,
            preallocate=self.preallocate,
            fs=self.fs,
        )
        return writer, anyio.CancelScope()

    @staticmethod
    async def _run_writer(writer: WalWriter, scope: anyio.CancelScope, *, task_status: Any) -> None:
        with scope:
            try:
                await writer.run(task_status=task_status)
            except Exception:
                if writer.last_recovery is None:
                    raise  # it did not even start: a recovery failure is a finding, not a crash
                # otherwise a simulated crash: what matters is what recovery finds next

    def _stop(self) -> None:
        assert self.scope is not None
        self.portal.call(self.scope.cancel)
        self.running.result(timeout=10)

    def _check_recovered(self) -> None:
        log = list(iter_frames(self.wal_dir))  # raises on an LSN gap or corruption
        assert [e.lsn for e in log] == list(range(1, len(log) + 1))
        assert self.writer is not None and self.writer.durable.value == len(log)
        by_lsn = {e.lsn: e.payload for e in log}
        for lsn, payload in self.acked.items():
            assert by_lsn.get(lsn) == payload, f"acknowledged LSN {lsn} lost or changed"
        for e in log:
            if e.lsn in self.acked:
                continue
            assert e.payload not in self.gone, f"LSN {e.lsn} holds a record that was refused or dropped"
            assert e.payload in self.unknown, f"LSN {e.lsn} holds a record nobody wrote"
            self.acked[e.lsn] = e.payload  # recovery made it durable: from now on it must stay
            self.unknown.discard(e.payload)
        self.gone |= self.unknown  # not recovered now, and its LSN will be reused: it must never appear
        self.unknown = set()

    def _payloads(self, sizes: list[int]) -> list[bytes]:
        items = []
        for size in sizes:
            self.counter += 1
            items.append(f"#{self.counter}:".encode() + b"x" * size)
        return items

    def _record(self, items: list[bytes], results: list[int | BaseException]) -> None:
        for item, result in zip(items, results, strict=True):
            if isinstance(result, int):
                assert result not in self.acked, f"LSN {result} acknowledged twice"
                self.acked[result] = item
            elif isinstance(result, WalWriteError | WalClosedError):
                self.gone.add(item)  # refused: definitely not in the log
            else:
                self.unknown.add(item)

    # -- rules -------------------------------------------------------------------------------------

    @rule(sizes=st.lists(st.integers(0, 70), min_size=1, max_size=6))
    def append(self, sizes: list[int]) -> None:
        items = self._payloads(sizes)
        results = self.portal.call(append_all, self.writer, items)
        self._record(items, results)
        if all(isinstance(r, int) for r in results):
            assert self.writer is not None and self.writer.durable.value >= max(results)  # type: ignore[type-var]

    @rule(
        code=st.sampled_from([errno.ENOSPC, errno.EIO]), partial=st.integers(0, 90), times=st.integers(1, 2)
    )
    def disk_fails_next_writes(self, code: int, partial: int, times: int) -> None:
        self.faulty.inject("write", code, times=times, partial=partial)

    @rule(
        calls=st.integers(0, 14),
        sizes=st.lists(st.integers(0, 70), min_size=1, max_size=6),
        policy=st.sampled_from(list(LossPolicy)),
        seed=st.integers(0, 2**32),
    )
    def power_cut_while_appending(self, calls: int, sizes: list[int], policy: LossPolicy, seed: int) -> None:
        self.fs.cut_power_after(calls)
        items = self._payloads(sizes)
        results = self.portal.call(append_all, self.writer, items)
        self._record(items, results)
        self._stop()
        self.fs.apply_power_loss(random.Random(seed), policy)
        self._start()

    @rule(
        op=st.sampled_from(["fdatasync", "fsync", "ftruncate", "rename", "fsync_dir"]),
        skip=st.integers(0, 2),
        sizes=st.lists(st.integers(0, 70), min_size=1, max_size=6),
        policy=st.sampled_from(list(LossPolicy)),
        seed=st.integers(0, 2**32),
    )
    def power_cut_before_a_sync(
        self, op: str, skip: int, sizes: list[int], policy: LossPolicy, seed: int
    ) -> None:
        """The most exposed moments: bytes written but not synced; a segment renamed, directory not synced."""
        self.fs.cut_power_at(op, skip)
        items = self._payloads(sizes)
        self._record(items, self.portal.call(append_all, self.writer, items))
        self._stop()
        self.fs.apply_power_loss(random.Random(seed), policy)
        self._start()

    @rule()
    def restart(self) -> None:
        self._stop()
        self._start()

    def teardown(self) -> None:
        try:
            if self.running is not None and not self.running.done():
                self._stop()
            if self.writer is not None and self.writer.failure is None:
                log = {e.lsn: e.payload for e in iter_frames(self.wal_dir)}
                assert all(log.get(lsn) == p for lsn, p in self.acked.items())
        finally:
            self.portal_cm.__exit__(None, None, None)
            shutil.rmtree(self.root, ignore_errors=True)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_the_log_keeps_every_acknowledged_record_through_crashes_and_disk_errors(backend):
    machine = type(f"WalMachine_{backend}", (WalMachine,), {"backend": backend})
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=40,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
