"""The shipper actor with directory targets: ships each sealed segment once, verified, to every target;
wakes on notify, on a watermark and on its scan; survives losing its state file; alarms on a name that
holds other bytes; ships the active segment's durable prefix; and never removes a local segment."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from service.backup.directory import DirectoryTarget
from service.backup.restore import download_segments
from service.backup.shipper import ActivePrefix, BackupShipper
from service.backup.targets import Target, partial_name, segment_name
from tests.service.test_backup_support import SegmentDir, until

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def running(shipper: BackupShipper) -> AsyncIterator[BackupShipper]:
    async with anyio.create_task_group() as tg:
        await tg.start(shipper.run)
        yield shipper
        tg.cancel_scope.cancel()


def make(tmp_path: Path, wal: SegmentDir, targets: list[Target], **kwargs: Any) -> BackupShipper:
    kwargs.setdefault("scan_interval_s", 30.0)  # long: tests wake it with notify() unless they say
    kwargs.setdefault("retry_min_s", 0.02)
    kwargs.setdefault("retry_max_s", 0.1)
    return BackupShipper(targets, wal.path, tmp_path / "backup-state.json", sealed_segments=wal, **kwargs)


def objects(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*.wal"))


async def test_ships_sealed_segments_to_every_target_and_keeps_local_files(tmp_path: Path) -> None:
    wal = SegmentDir(tmp_path / "wal")
    wal.add(1, 100)
    wal.add(101, 180)
    wal.add(181, 190, sealed=False)  # the active segment is not shipped
    a, b = DirectoryTarget(tmp_path / "a"), DirectoryTarget(tmp_path / "b")
    async with running(make(tmp_path, wal, [a, b])) as shipper:
        await until(lambda: all(s.shipped_lsn == 180 for s in shipper.status().values()), what="shipped")
        for root in (tmp_path / "a", tmp_path / "b"):
            assert objects(root) == [segment_name(1, 100), segment_name(101, 180)]
            assert (root / segment_name(1, 100)).read_bytes() == (wal.path / f"{1:020d}.wal").read_bytes()
        status = shipper.status()[a.url]
        assert (status.backlog_segments, status.backlog_bytes, status.oldest_unshipped_age_s) == (0, 0, None)
        assert status.consecutive_failures == 0 and status.last_success_at is not None

        wal.seal(181)
        await shipper.notify()
        await until(lambda: all(s.shipped_lsn == 190 for s in shipper.status().values()), what="notify")
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert [(e["first_lsn"], e["last_lsn"]) for e in manifest["segments"]] == [
        (1, 100),
        (101, 180),
        (181, 190),
    ]
    state = json.loads((tmp_path / "backup-state.json").read_text())
    assert set(state["targets"]) == {a.url, b.url}
    assert len(list(wal.path.iterdir())) == 3  # nothing local is ever removed


async def test_backlog_is_visible_while_a_target_is_unreachable(tmp_path: Path) -> None:
    wal = SegmentDir(tmp_path / "wal")
    wal.add(1, 10, size=1000)
    wal.add(11, 20, size=2000)
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the target folder should be")
    broken, healthy = DirectoryTarget(blocker / "backups"), DirectoryTarget(tmp_path / "ok")
    async with running(make(tmp_path, wal, [broken, healthy])) as shipper:
        await until(lambda: shipper.status()[broken.url].consecutive_failures >= 3, what="failures")
        down = shipper.status()[broken.url]
        assert (down.shipped_lsn, down.backlog_segments, down.backlog_bytes) == (0, 2, 3000)
        assert down.oldest_unshipped_age_s is not None and down.oldest_unshipped_age_s >= 0
        assert down.last_error is not None and "not-a-dir" in down.last_error
        await until(lambda: shipper.status()[healthy.url].shipped_lsn == 20, what="healthy lane")
        blocker.unlink()  # the target comes back
        await until(lambda: shipper.status()[broken.url].backlog_segments == 0, what="drained")
        up = shipper.status()[broken.url]
        assert up.shipped_lsn == 20 and up.consecutive_failures == 0
    assert objects(blocker / "backups") == [segment_name(1, 10), segment_name(11, 20)]


async def test_periodic_scan_and_watermark_wake_the_shipper(tmp_path: Path) -> None:
    class Watermark:  # the shape of wal.watermark.Watermark: .value and async wait_for(v)
        def __init__(self) -> None:
            self.value = 0
            self._changed = anyio.Event()

        def set(self, value: int) -> None:
            self.value = value
            self._changed.set()
            self._changed = anyio.Event()

        async def wait_for(self, value: int) -> None:
            while self.value < value:
                await self._changed.wait()

    wal = SegmentDir(tmp_path / "wal")
    target = DirectoryTarget(tmp_path / "t")
    watermark = Watermark()
    async with running(make(tmp_path, wal, [target], watermark=watermark)) as shipper:
        wal.add(1, 5)
        watermark.set(5)
        await until(lambda: shipper.status()[target.url].shipped_lsn == 5, what="watermark")
    wal.add(6, 9)
    async with running(make(tmp_path, wal, [target], scan_interval_s=0.05)) as shipper:
        wal.add(10, 12)  # nobody tells it: the scan finds it
        await until(lambda: shipper.status()[target.url].shipped_lsn == 12, what="scan")


async def test_lost_state_file_costs_a_check_not_a_second_copy(tmp_path: Path) -> None:
    wal = SegmentDir(tmp_path / "wal")
    wal.add(1, 10)
    wal.add(11, 20)
    target = DirectoryTarget(tmp_path / "t")
    async with running(make(tmp_path, wal, [target])) as shipper:
        await until(lambda: shipper.status()[target.url].shipped_lsn == 20)
    first = {n: (tmp_path / "t" / n).stat().st_ino for n in objects(tmp_path / "t")}
    (tmp_path / "backup-state.json").unlink()
    async with running(make(tmp_path, wal, [target])) as shipper:
        await until(lambda: shipper.status()[target.url].shipped_lsn == 20)
    assert {n: (tmp_path / "t" / n).stat().st_ino for n in objects(tmp_path / "t")} == first
    assert (tmp_path / "backup-state.json").exists()


async def test_target_wiped_behind_the_state_file_is_shipped_again(tmp_path: Path) -> None:
    wal = SegmentDir(tmp_path / "wal")
    wal.add(1, 10)
    target = DirectoryTarget(tmp_path / "t")
    async with running(make(tmp_path, wal, [target])) as shipper:
        await until(lambda: shipper.status()[target.url].shipped_lsn == 10)
    for p in (tmp_path / "t").rglob("*"):
        if p.is_file():
            p.unlink()
    async with running(make(tmp_path, wal, [target])) as shipper:
        await until(lambda: (tmp_path / "t" / segment_name(1, 10)).exists(), what="re-shipped")
        await until(lambda: shipper.status()[target.url].shipped_lsn == 10)


async def test_a_name_present_with_other_bytes_is_an_alarm_and_is_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    wal = SegmentDir(tmp_path / "wal")
    wal.add(1, 10)
    wal.add(11, 20)
    target = DirectoryTarget(tmp_path / "t")
    target.put_if_absent(segment_name(1, 10), b"someone else's bytes", "0" * 64)
    async with running(make(tmp_path, wal, [target])) as shipper:
        await until(lambda: (tmp_path / "t" / segment_name(11, 20)).exists(), what="later segment")
        # The later segment's file appears before its upload is verified and counted: wait for the count.
        await until(
            lambda: (
                bool(shipper.status()[target.url].alarms)
                and shipper.status()[target.url].backlog_segments == 1
            ),
            what="the alarm, and only the first segment left in the backlog",
        )
        status = shipper.status()[target.url]
        assert status.shipped_lsn == 0  # the first segment is not safely off-box
        assert segment_name(1, 10) in status.alarms[0]
    assert (tmp_path / "t" / segment_name(1, 10)).read_bytes() == b"someone else's bytes"
    assert any(r.levelname == "CRITICAL" and "BACKUP ALARM" in r.getMessage() for r in caplog.records)


async def test_active_prefix_is_shipped_and_superseded(tmp_path: Path) -> None:
    wal = SegmentDir(tmp_path / "wal")
    wal.add(1, 10)
    active = wal.add(11, 40, size=9000, sealed=False)
    durable: list[ActivePrefix | None] = [(active, 11, 20, 3000)]
    target = DirectoryTarget(tmp_path / "t")
    shipper = make(
        tmp_path, wal, [target], active_prefix_interval_s=0.05, active_durable_prefix=lambda: durable[0]
    )
    async with running(shipper):
        await until(lambda: shipper.status()[target.url].active_shipped_lsn == 20, what="first prefix")
        assert (tmp_path / "t" / partial_name(11, 20)).read_bytes() == active.read_bytes()[:3000]
        durable[0] = (active, 11, 30, 6000)
        await until(lambda: shipper.status()[target.url].active_shipped_lsn == 30, what="longer prefix")
        await until(lambda: not (tmp_path / "t" / partial_name(11, 20)).exists(), what="old prefix gone")
        # A restore now reaches LSN 30 although the segment is still being written.
        restored = download_segments(target, tmp_path / "restore")
        assert [p.name for p in restored] == [f"{1:020d}.wal", f"{11:020d}.wal"]
        assert restored[1].read_bytes() == active.read_bytes()[:6000]
        wal.seal(11)
        durable[0] = None
        await shipper.notify()
        await until(lambda: shipper.status()[target.url].shipped_lsn == 40, what="sealed")
        await until(lambda: not list((tmp_path / "t" / "active").iterdir()), what="prefixes retired")
        assert shipper.status()[target.url].active_shipped_lsn is None
    manifest = json.loads((tmp_path / "t" / "manifest.json").read_text())
    assert manifest["active"] is None and len(manifest["segments"]) == 2


async def test_no_targets_still_runs(tmp_path: Path) -> None:
    wal = SegmentDir(tmp_path / "wal")
    async with running(make(tmp_path, wal, [])) as shipper:
        assert shipper.status() == {}
        await shipper.notify()


def test_two_targets_with_one_url_are_refused(tmp_path: Path) -> None:
    wal = SegmentDir(tmp_path / "wal")
    with pytest.raises(ValueError, match="twice"):
        make(tmp_path, wal, [DirectoryTarget(tmp_path / "x"), DirectoryTarget(tmp_path / "x")])
