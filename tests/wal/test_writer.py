"""The writer actor against real files: group commit, rollover, and what happens when the disk fails."""

from __future__ import annotations

import errno
import itertools
import threading
import time
from pathlib import Path

import anyio
import pytest

from tests.wal.helpers import entries, eventually, payloads, segment_files
from wal.codec import FRAME_HEADER_SIZE
from wal.errors import WalClosedError, WalFsyncError, WalWriteError
from wal.fs import FaultyFileSystem
from wal.recover import inspect_log
from wal.writer import WalWriter

pytestmark = pytest.mark.anyio


class SlowSyncFileSystem(FaultyFileSystem):
    """Real files whose fdatasync takes a while, to hold a batch in flight."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay
        self.syncing = threading.Event()

    def fdatasync(self, fd: int) -> None:
        self.syncing.set()
        time.sleep(self.delay)
        super().fdatasync(fd)


async def append_all(writer: WalWriter, items: list[bytes]) -> list[int | BaseException]:
    """Append every item concurrently; each result is an LSN or the exception its append raised."""
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


async def test_appends_get_consecutive_lsns_and_are_durable_when_acknowledged(tmp_path):
    writer = WalWriter(tmp_path / "wal")
    async with anyio.create_task_group() as tg:
        await tg.start(writer.run)
        lsns = [await writer.append(1, f"r{i}".encode()) for i in range(1, 6)]
        assert lsns == [1, 2, 3, 4, 5]
        assert writer.durable.value == 5
        assert payloads(tmp_path / "wal") == [f"r{i}".encode() for i in range(1, 6)]
        tg.cancel_scope.cancel()
    second = WalWriter(tmp_path / "wal")
    async with anyio.create_task_group() as tg:
        await tg.start(second.run)
        assert second.last_recovery is not None and second.last_recovery.last_lsn == 5
        assert second.durable.value == 5
        assert await second.append(2, b"later") == 6
        tg.cancel_scope.cancel()


async def test_concurrent_appends_share_one_write_and_one_fdatasync_per_batch(tmp_path):
    fs = SlowSyncFileSystem(0.02)
    writer = WalWriter(tmp_path / "wal", fs=fs)
    async with anyio.create_task_group() as tg:
        await tg.start(writer.run)
        syncs_before, writes_before = fs.calls["fdatasync"], fs.calls["write"]
        results = await append_all(writer, [f"p{i}".encode() for i in range(60)])
        tg.cancel_scope.cancel()
    assert sorted(results) == list(range(1, 61))  # type: ignore[type-var]
    syncs = fs.calls["fdatasync"] - syncs_before
    writes = fs.calls["write"] - writes_before
    assert writes == syncs  # each batch: one write, one fdatasync
    assert 1 <= syncs <= 5, syncs  # 60 appends queued behind a slow sync go out in a few batches
    assert sum(e.batch_start for e in entries(tmp_path / "wal")) == syncs


async def test_a_batch_stays_within_the_byte_cap(tmp_path):
    fs = SlowSyncFileSystem(0.01)
    writer = WalWriter(tmp_path / "wal", batch_bytes=3 * (FRAME_HEADER_SIZE + 40), fs=fs)
    async with anyio.create_task_group() as tg:
        await tg.start(writer.run)
        await append_all(writer, [bytes(40)] * 30)
        tg.cancel_scope.cancel()
    frames = entries(tmp_path / "wal")
    starts = [i for i, f in enumerate(frames) if f.batch_start] + [len(frames)]
    sizes = [b - a for a, b in itertools.pairwise(starts)]
    assert max(sizes) == 3 and len(sizes) >= 10


async def test_segments_roll_over_named_by_first_lsn_and_sealed_exactly(tmp_path):
    wal_dir = tmp_path / "wal"
    writer = WalWriter(wal_dir, segment_bytes=300)
    async with anyio.create_task_group() as tg:
        await tg.start(writer.run)
        for i in range(40):
            await writer.append(1, f"record number {i:03d}".encode())
        found = inspect_log(wal_dir)
        sealed = [s for s in found.segments if s.sealed]
        assert len(sealed) >= 3
        assert writer.sealed.value == sealed[-1].last_lsn
        tg.cancel_scope.cancel()
    for info in found.segments:
        assert info.path.name == f"{info.first_lsn:020d}.wal"
        assert info.status.value == "ok"
        if info.sealed:
            assert info.size == info.valid_size <= 300  # no preallocated zeros left in a sealed segment
    assert found.segments[-1].size == 300  # the active one is preallocated
    assert [e.lsn for e in entries(wal_dir)] == list(range(1, 41))


async def run_until_stopped(writer: WalWriter, outcome: dict[str, BaseException], *, task_status) -> None:
    """Run the writer as the service's supervisor would, keeping the error it stops with."""
    try:
        await writer.run(task_status=task_status)
    except Exception as exc:
        outcome["stopped"] = exc


async def test_a_failed_fdatasync_fails_the_append_and_stops_the_writer_without_retrying(tmp_path):
    fs = FaultyFileSystem()
    writer = WalWriter(tmp_path / "wal", fs=fs)
    outcome: dict[str, BaseException] = {}
    async with anyio.create_task_group() as tg:
        await tg.start(run_until_stopped, writer, outcome)
        assert await writer.append(1, b"fine") == 1
        syncs = fs.calls["fdatasync"]
        fs.inject("fdatasync", errno.EIO)
        with pytest.raises(WalFsyncError, match="never retried"):
            await writer.append(1, b"doomed")
        await eventually(lambda: "stopped" in outcome)  # run() ends by itself, raising
    stopped = outcome["stopped"]
    assert isinstance(stopped, WalFsyncError) and "fdatasync" in str(stopped)
    assert fs.calls["fdatasync"] == syncs + 1  # exactly one attempt: never retried
    assert writer.failure is stopped
    with pytest.raises(WalClosedError) as closed:
        await writer.append(1, b"after")
    assert closed.value.__cause__ is stopped
    # the acknowledged record is there; the failed one was never acknowledged (it may or may not be)
    assert payloads(tmp_path / "wal")[0] == b"fine"


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EIO])
async def test_a_failed_write_leaves_its_batch_unacknowledged_cut_off_and_lsns_gap_free(tmp_path, code):
    fs = FaultyFileSystem()
    wal_dir = tmp_path / "wal"
    writer = WalWriter(wal_dir, fs=fs, preallocate=False)
    async with anyio.create_task_group() as tg:
        await tg.start(writer.run)
        assert await writer.append(1, b"one") == 1
        assert await writer.append(1, b"two") == 2
        size = segment_files(wal_dir)[0].stat().st_size
        # the failing write really puts a whole frame and a bit on disk before the error
        fs.inject("write", code, times=2, partial=FRAME_HEADER_SIZE + 9)
        for _ in range(2):
            with pytest.raises(WalWriteError) as failed:
                await writer.append(1, b"lost-one")
            assert failed.value.errno == code
            assert "nothing of this batch was acknowledged" in str(failed.value)
            assert segment_files(wal_dir)[0].stat().st_size == size  # the partial bytes were cut off
        assert writer.durable.value == 2
        assert await writer.append(1, b"three") == 3  # the failed LSN is reused: no gap
        results = await append_all(writer, [b"four", b"five"])
        assert sorted(results) == [4, 5]  # type: ignore[type-var]
        tg.cancel_scope.cancel()
    assert [e.lsn for e in entries(wal_dir)] == [1, 2, 3, 4, 5]
    assert b"lost-one" not in payloads(wal_dir)


async def test_a_full_disk_at_rollover_fails_that_batch_and_recovers_when_space_returns(tmp_path):
    fs = FaultyFileSystem()
    wal_dir = tmp_path / "wal"
    writer = WalWriter(wal_dir, segment_bytes=200, fs=fs)
    async with anyio.create_task_group() as tg:
        await tg.start(writer.run)
        lsn = 0
        while len(segment_files(wal_dir)) == 1:
            lsn = await writer.append(1, bytes(30))
        fs.inject("open", errno.ENOSPC, times=None)  # no new segment can be created
        before = len(segment_files(wal_dir))
        last = lsn
        for _ in range(20):  # fill the active segment until a rollover is needed
            try:
                last = await writer.append(1, bytes(30))
            except WalWriteError as exc:
                assert exc.errno == errno.ENOSPC
                break
        else:
            pytest.fail("no rollover was attempted")
        assert len(segment_files(wal_dir)) == before
        fs.clear()
        assert await writer.append(1, b"space is back") == last + 1
        tg.cancel_scope.cancel()
    assert [e.lsn for e in entries(wal_dir)] == list(range(1, last + 2))


async def test_cancelling_the_writer_answers_the_batch_in_flight_and_refuses_the_rest(tmp_path):
    fs = SlowSyncFileSystem(0.0)
    wal_dir = tmp_path / "wal"
    writer = WalWriter(wal_dir, fs=fs)
    writer_scope = anyio.CancelScope()
    results: list[int | BaseException] = []

    async def run_writer(*, task_status) -> None:
        with writer_scope:
            await writer.run(task_status=task_status)

    async def appender(i: int) -> None:
        try:
            results.append(await writer.append(1, f"{i}".encode()))
        except WalClosedError as exc:
            results.append(exc)

    async with anyio.create_task_group() as tg:
        await tg.start(run_writer)
        fs.delay = 0.2
        fs.syncing.clear()
        tg.start_soon(appender, 0)
        await anyio.to_thread.run_sync(fs.syncing.wait)  # the first batch is in its fdatasync
        for i in range(1, 6):
            tg.start_soon(appender, i)
        await anyio.sleep(0.02)
        writer_scope.cancel()  # stop the writer while batch 1 is in flight and 5 appends are queued
    assert results.count(1) == 1  # the batch it had taken was written and answered
    refused = [r for r in results if isinstance(r, WalClosedError)]
    assert len(refused) == 5 and len(results) == 6
    assert payloads(wal_dir) == [b"0"]
    with pytest.raises(WalClosedError):
        await writer.append(1, b"too late")


async def test_bad_appends_are_refused_before_queueing(tmp_path):
    writer = WalWriter(tmp_path / "wal")
    async with anyio.create_task_group() as tg:
        await tg.start(writer.run)
        with pytest.raises(ValueError):
            await writer.append(0, b"x")
        with pytest.raises(ValueError):
            await writer.append(70000, b"x")
        assert await writer.append(3, bytearray(b"mutable is copied")) == 1
        tg.cancel_scope.cancel()
    with pytest.raises(RuntimeError, match="runs once"):
        await writer.run()


async def test_the_durable_watermark_wakes_a_waiter_when_the_record_is_on_disk(tmp_path):
    writer = WalWriter(tmp_path / "wal")
    seen: list[int] = []
    async with anyio.create_task_group() as tg:
        await tg.start(writer.run)

        async def wait_for_three() -> None:
            seen.append(await writer.durable.wait_for(3))
            seen.append(len(payloads(Path(tmp_path / "wal"))))

        tg.start_soon(wait_for_three)
        for i in range(3):
            await anyio.sleep(0.01)
            assert not seen
            await writer.append(1, f"{i}".encode())
        await anyio.sleep(0.05)
        tg.cancel_scope.cancel()
    assert seen == [3, 3]


async def test_append_many_keeps_the_callers_order_in_one_group_commit(tmp_path):
    fs = FaultyFileSystem()
    wal_dir = tmp_path / "wal"
    writer = WalWriter(wal_dir, fs=fs)
    async with anyio.create_task_group() as tg:
        await tg.start(writer.run)
        syncs = fs.calls["fdatasync"]
        assert await writer.append_many([(1, b"a"), (2, b"b"), (3, b"c")]) == [1, 2, 3]
        assert fs.calls["fdatasync"] == syncs + 1
        fs.inject("write", errno.ENOSPC)
        with pytest.raises(WalWriteError):
            await writer.append_many([(1, b"lost"), (1, b"lost too")])
        assert await writer.append_many([(1, b"d")]) == [4]
        tg.cancel_scope.cancel()
    assert [(e.lsn, e.record_type, e.payload) for e in entries(wal_dir)] == [
        (1, 1, b"a"),
        (2, 2, b"b"),
        (3, 3, b"c"),
        (4, 1, b"d"),
    ]


def tear_tail(segment: Path, at: int) -> None:
    """Half a frame after the last record, as a write cut short by a crash leaves it."""
    with open(segment, "r+b") as f:
        f.seek(at)
        f.write(b"\x10\x00\x00\x00garbage")


async def test_a_writer_given_recoverys_report_continues_from_it(tmp_path: Path) -> None:
    """Start-up recovery opens (and repairs) the log; the writer it hands the report to must continue from
    exactly there: the next LSN, the same active segment, the torn tail already cut."""
    from wal.recover import open_log

    async with anyio.create_task_group() as tg:
        first = WalWriter(tmp_path, segment_bytes=4096)
        await tg.start(first.run)
        for n in range(30):
            await first.append(1, b"r%d" % n)
        tg.cancel_scope.cancel()
    tear_tail(segment_files(tmp_path)[-1], inspect_log(tmp_path).segments[-1].valid_size)
    report = open_log(tmp_path, repair=True)
    assert report.last_lsn == 30 and report.torn_bytes_cut > 0
    async with anyio.create_task_group() as tg:
        second = WalWriter(tmp_path, segment_bytes=4096, opened=report)
        await tg.start(second.run)
        assert second.last_recovery is report  # started from recovery's view, not a second verification
        assert await second.append(1, b"next") == 31
        tg.cancel_scope.cancel()
    assert [e.lsn for e in entries(tmp_path)] == list(range(1, 32))
