"""Campaign 4: the log's filesystem fills up during a stream of joins (WAL rule 6).

The most real setting: the log directory is a tiny ext4 filesystem loop-mounted at `<data>/wal` (needs
root); a filler file takes every free block mid-stream and is deleted later. Without root or loop devices
(or with INVITE_LEDGER_TEST_NO_LOOP=1) the same story runs on the fault layer: `FaultyFileSystem` answers
ENOSPC to every write. Either way: the joins that hit the full disk are not acknowledged while it is full
(the log refuses their batches and cuts the bytes off), the service keeps running, the refused joins wait
and are written once space returns, and nothing is lost or written twice.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from recovery.faultlab.invariants import Projection, check
from recovery.startup import recover
from service.app import Service
from tests.recovery.support import join_stream, make_config
from wal import FaultyFileSystem, WalWriter

pytestmark = pytest.mark.anyio


def _mount_tiny_ext4(image: Path, mountpoint: Path) -> bool:
    if os.environ.get("INVITE_LEDGER_TEST_NO_LOOP") or os.geteuid() != 0 or shutil.which("mkfs.ext4") is None:
        return False
    with open(image, "wb") as f:
        f.truncate(8 * 2**20)
    mountpoint.mkdir(parents=True, exist_ok=True)
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "timeout": 30}
    if subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", str(image)], check=False, **quiet).returncode:
        return False
    return (
        subprocess.run(["mount", "-o", "loop", str(image), str(mountpoint)], check=False, **quiet).returncode
        == 0
    )


@pytest.fixture
def wal_on_tiny_fs(tmp_path: Path) -> Iterator[Path | None]:
    """`<tmp>/data/wal` on its own 8 MiB ext4, or None where that cannot be mounted."""
    mountpoint = tmp_path / "data" / "wal"
    mounted = _mount_tiny_ext4(tmp_path / "wal.img", mountpoint)
    try:
        yield mountpoint if mounted else None
    finally:
        if mounted:
            subprocess.run(["umount", str(mountpoint)], check=False, timeout=30)


def _fill(directory: Path) -> Path:
    """Take every free block of the filesystem holding `directory`: big writes first, then ever smaller
    ones, so not even a preallocated segment's worth of space is left."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for size in (1 << 20, 1 << 16, 1 << 12, 1 << 9, 1):
            chunk = b"\xff" * size
            for _ in range(100_000):
                try:
                    os.write(fd, chunk)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC
                    break
        os.fsync(fd)
    finally:
        os.close(fd)
    return filler


async def test_a_full_log_disk_refuses_joins_loses_nothing_and_recovers(
    tmp_path: Path, wal_on_tiny_fs
) -> None:
    config = make_config(tmp_path / "data", INVITE_LEDGER_WAL_SEGMENT_BYTES="16384")
    faulty: FaultyFileSystem | None = None
    if wal_on_tiny_fs is None:  # no loop mount here: the fault layer plays the full disk
        faulty = FaultyFileSystem()
    filler: list[Path] = []
    durable_when: dict[str, int] = {}

    def use_fault_layer(service: Service) -> None:
        ledger = service.ledger
        ledger.writer = WalWriter(config.wal_dir, segment_bytes=16384, fs=faulty)
        ledger.applier.durable = ledger.writer.durable

    async def disk_full(service: Service) -> None:
        durable_when["full"] = service.ledger.writer.durable.value
        if faulty is not None:
            faulty.inject("write", errno.ENOSPC, times=None)
            faulty.inject("fallocate", errno.ENOSPC, times=None)
        else:
            filler.append(await anyio.to_thread.run_sync(_fill, config.wal_dir))

    async def space_back(service: Service) -> None:
        # The disk stays full until the log has refused a batch: on a slow machine the joins sent while it
        # was full may still be queued in front of the log, and freeing the space too early would test
        # nothing. Bounded: a log that never refuses fails the assertion below instead of hanging.
        with anyio.move_on_after(20):
            while service.attribution.append_failures == 0:
                await anyio.sleep(0.01)
        durable_when["back"] = service.ledger.writer.durable.value
        if faulty is not None:
            faulty.clear()
        else:
            filler.pop().unlink()

    joins = 600
    acked, service = await join_stream(
        config,
        joins,
        hooks={200: disk_full, 400: space_back},
        settle_s=1.5,
        before_run=use_fault_layer if faulty is not None else None,
    )
    failures = service.attribution.append_failures
    print(
        f"ENOSPC ({'loop-mounted ext4' if faulty is None else 'fault layer'}): the log refused "
        f"{failures} batch(es) while the disk was full; {len(acked)} of {joins} joins acknowledged in the end"
    )
    assert failures > 0, "the full disk should have refused some batches"
    # Refused joins waited and were written once space came back: every join is acknowledged, and some
    # only after the space returned.
    assert len(acked) == joins
    assert max(acked.values()) > durable_when["back"]

    report = recover(config, progress=False)
    assert report.last_lsn > 0
    expected = Projection(tmp_path / "expected.sqlite3")
    try:
        result = check(config, acked, expected)
    finally:
        expected.close()
    assert result.lost == () and result.duplicated == () and result.projection_equal
