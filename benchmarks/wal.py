"""WAL benchmark: durable appends per second and acknowledgement latency, against the disk and SQLite.

    python -m benchmarks.wal [--quick] [--dir DIR]

Everything runs in one process on the same disk (a temporary directory under ./data/bench by default):

* raw: a tight write + fdatasync loop of one WAL frame into a preallocated file, the same file pattern as the
  WAL's (the disk's limit for one durable record at a time), run in a worker thread like the writer's I/O;
* raw-append: the same loop appending to a plain file, so each fdatasync must also persist the new file
  size; the WAL avoids that cost by preallocating, so this one is shown for reference only;
* wal-N: N producer tasks appending a 400-byte join record each to a `WalWriter` on asyncio (the
  production backend), each timing its own `append` from call to acknowledgement;
* sqlite-full: the same records inserted with apsw, journal_mode=WAL, synchronous=FULL, one transaction per
  record.

The measurements are taken in interleaved rounds (raw, wal-1, wal-8, wal-64, sqlite, then again) so that a
neighbour's load on a shared machine falls on every contender alike. The last line printed is
`RESULT {json}`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import anyio
import anyio.to_thread
import apsw
import attrs

from service import convert
from service.records import AttributionKind, JoinRecorded
from wal import WalWriter, encode_frame

RECORD_BYTES = 400


def join_payload(index: int = 0) -> tuple[int, bytes]:
    """A realistic join record whose JSON payload is exactly RECORD_BYTES long."""
    ts = datetime(2026, 11, 24, 12, 0, index % 60, tzinfo=UTC)
    record = JoinRecorded(
        timestamp=ts,
        guild_id="1100000000000000001",
        guild_name="PipVault Trading",
        user_id=str(1200000000000000000 + index),
        username="newmember",
        display_name="",
        kind=AttributionKind.EXACT,
        invite_code="pipvault7",
        staff_id="1300000000000000003",
        staff_username="staff.anna",
        uses_before=41,
        uses_after=42,
    )
    type_code, payload = convert.encode(record)
    pad = RECORD_BYTES - len(payload)
    if pad < 0:
        raise RuntimeError(f"base join record is {len(payload)} bytes, more than {RECORD_BYTES}")
    type_code, payload = convert.encode(attrs.evolve(record, display_name="n" * pad))
    assert len(payload) == RECORD_BYTES, len(payload)
    return type_code, payload


class Samples:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.ops = 0
        self.seconds = 0.0

    def add_run(self, latencies: list[float], ops: int, seconds: float) -> None:
        self.latencies.extend(latencies)
        self.ops += ops
        self.seconds += seconds

    @property
    def per_second(self) -> float:
        return self.ops / self.seconds if self.seconds else 0.0

    def percentile_us(self, q: float) -> float:
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e6


def raw_fdatasync(directory: Path, count: int, *, preallocate: bool = False) -> tuple[list[float], float]:
    frame = encode_frame(1, 1, join_payload()[1])
    path = directory / "raw.bin"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    if preallocate:  # the WAL's own file pattern: overwrite reserved blocks, the file size never changes
        os.posix_fallocate(fd, 0, count * len(frame) + 4096)
        os.fsync(fd)
    latencies = []
    offset = 0
    clock = time.perf_counter
    try:
        started = clock()
        for _ in range(count):
            t0 = clock()
            os.pwrite(fd, frame, offset)
            os.fdatasync(fd)
            latencies.append(clock() - t0)
            offset += len(frame)
        elapsed = clock() - started
    finally:
        os.close(fd)
        path.unlink()
    return latencies, elapsed


async def wal_appends(directory: Path, producers: int, per_producer: int) -> tuple[list[float], float]:
    type_code, payload = join_payload()
    wal_dir = directory / f"wal-{producers}"
    writer = WalWriter(wal_dir)
    latencies: list[float] = []
    clock = time.perf_counter

    async def producer() -> None:
        append = writer.append
        record = latencies.append
        for _ in range(per_producer):
            t0 = clock()
            await append(type_code, payload)
            record(clock() - t0)

    async with anyio.create_task_group() as tg:
        await tg.start(writer.run)
        started = clock()
        async with anyio.create_task_group() as producers_tg:
            for _ in range(producers):
                producers_tg.start_soon(producer)
        elapsed = clock() - started
        tg.cancel_scope.cancel()
    shutil.rmtree(wal_dir)
    return latencies, elapsed


def sqlite_full(directory: Path, count: int) -> tuple[list[float], float]:
    type_code, payload = join_payload()
    path = directory / "bench.sqlite"
    conn = apsw.Connection(str(path))
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE log (lsn INTEGER PRIMARY KEY, type INTEGER NOT NULL, payload BLOB NOT NULL)")
    latencies = []
    clock = time.perf_counter
    started = clock()
    for lsn in range(1, count + 1):
        t0 = clock()
        with conn:  # one transaction, so one WAL commit and one fsync, per record
            conn.execute("INSERT INTO log VALUES (?, ?, ?)", (lsn, type_code, payload))
        latencies.append(clock() - t0)
    elapsed = clock() - started
    conn.close()
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    return latencies, elapsed


async def run_benchmark(
    directory: Path, *, rounds: int, raw_n: int, wal_n: dict[int, int], sqlite_n: int
) -> dict[str, Samples]:
    results = {name: Samples() for name in ("raw", "raw-append", "wal-1", "wal-8", "wal-64", "sqlite-full")}

    async def in_thread(name: str, func: Callable[[Path, int], tuple[list[float], float]], n: int) -> None:
        latencies, elapsed = await anyio.to_thread.run_sync(func, directory, n)
        results[name].add_run(latencies, len(latencies), elapsed)

    # A warm-up round, not counted: first-touch costs (imports, thread start, file creation) are not the
    # steady state any of the contenders is about.
    await anyio.to_thread.run_sync(raw_fdatasync, directory, 50)
    await wal_appends(directory, 8, 20)
    for _ in range(rounds):
        await in_thread("raw", partial(raw_fdatasync, preallocate=True), raw_n)
        await in_thread("raw-append", raw_fdatasync, raw_n)
        for producers in (1, 8, 64):
            latencies, elapsed = await wal_appends(directory, producers, wal_n[producers] // producers)
            results[f"wal-{producers}"].add_run(latencies, len(latencies), elapsed)
        await in_thread("sqlite-full", sqlite_full, sqlite_n)
    return results


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    system = f"{platform.system()} {platform.release()}"
    return f"{cpu}, {os.cpu_count()} cores, {system}, Python {platform.python_version()}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.wal", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a shorter run (under 30 seconds)")
    parser.add_argument("--dir", type=Path, default=Path("data/bench"), help="where the files go (same disk)")
    args = parser.parse_args(argv)
    if args.quick:
        settings = {"rounds": 4, "raw_n": 400, "wal_n": {1: 400, 8: 1600, 64: 6400}, "sqlite_n": 300}
    else:
        settings = {"rounds": 10, "raw_n": 1000, "wal_n": {1: 1000, 8: 4000, 64: 16000}, "sqlite_n": 600}
    args.dir.mkdir(parents=True, exist_ok=True)
    directory = Path(tempfile.mkdtemp(prefix="wal-bench-", dir=args.dir))
    started = time.perf_counter()
    try:
        results = anyio.run(lambda: run_benchmark(directory, **settings), backend="asyncio")  # type: ignore[arg-type]
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    wall = time.perf_counter() - started

    print(f"WAL benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {machine()}")
    rounds = settings["rounds"]
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"record {RECORD_BYTES} B payload, asyncio backend, {rounds} interleaved rounds, {wall:.1f} s")
    print(f"load average after the run: {load} (a shared machine: other work competes for disk and CPU)")
    print(f"{'contender':<14}{'records':>9}{'per s':>10}{'p50 µs':>9}{'p99 µs':>9}")
    for name, samples in results.items():
        print(
            f"{name:<14}{samples.ops:>9}{samples.per_second:>10.0f}"
            f"{samples.percentile_us(0.5):>9.0f}{samples.percentile_us(0.99):>9.0f}"
        )
    raw, sqlite = results["raw"], results["sqlite-full"]
    summary = {
        "appends_per_s_1": round(results["wal-1"].per_second),
        "appends_per_s_8": round(results["wal-8"].per_second),
        "appends_per_s_64": round(results["wal-64"].per_second),
        "sqlite_full_per_s": round(sqlite.per_second),
        "raw_fdatasync_per_s": round(raw.per_second),
        "ratio_64_vs_sqlite_full": round(results["wal-64"].per_second / sqlite.per_second, 2),
        "p50_ack_us_1": round(results["wal-1"].percentile_us(0.5), 1),
        "p99_ack_us_1": round(results["wal-1"].percentile_us(0.99), 1),
        "p50_ack_us_64": round(results["wal-64"].percentile_us(0.5), 1),
        "p99_ack_us_64": round(results["wal-64"].percentile_us(0.99), 1),
        "p50_raw_fdatasync_us": round(raw.percentile_us(0.5), 1),
        "p50_raw_append_fdatasync_us": round(results["raw-append"].percentile_us(0.5), 1),
        "raw_append_fdatasync_per_s": round(results["raw-append"].per_second),
        "p50_sqlite_full_us": round(sqlite.percentile_us(0.5), 1),
        "ack_vs_raw_p50": round(results["wal-1"].percentile_us(0.5) / raw.percentile_us(0.5), 2),
        "ack_vs_raw_append_p50": round(
            results["wal-1"].percentile_us(0.5) / results["raw-append"].percentile_us(0.5), 2
        ),
        "mean_ack_us_1": round(statistics.fmean(results["wal-1"].latencies) * 1e6, 1),
    }
    print("RESULT " + json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
