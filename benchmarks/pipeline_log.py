"""The log-sized part of the pipeline benchmark: a big log written, read, decoded, rebuilt, queried, exported.

Items 2 to 4 of `benchmarks.pipeline`'s docstring, which says what each figure means and the targets. Apart
from the end-to-end run (`benchmarks.pipeline`) because none of it runs the service: it measures what
recovery and the commands do with a log of a million records, on the same disk.
"""

from __future__ import annotations

import gc
import itertools
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import anyio
import anyio.to_thread
import attrs

from benchmarks.projection_bench import (
    ExportResult,
    LookupResult,
    iter_join_records,
    measure_export,
    measure_lookups,
)
from recovery.parallel import parallel_parts
from recovery.replay import rebuild_from_log as recovery_rebuild
from service import convert
from service.applier import Applier
from service.projection import apply_frames, open_database
from service.projection.join_rows import join_row
from wal import WalWriter, iter_frames, iter_raw_frames

T = TypeVar("T")


@attrs.frozen
class LogBuild:
    records: int
    seconds: float
    bytes: int
    segments: int
    pairs: list[tuple[str, str]]


async def write_log(wal_dir: Path, records: int, seed: int, chunk: int = 4_096) -> LogBuild:
    """`records` synthetic joins appended with `WalWriter.append_many` (real segments, group commits)."""
    writer = WalWriter(wal_dir)
    pairs: set[tuple[str, str]] = set()
    started = time.perf_counter()
    source = iter_join_records(records, seed=seed)
    encode = convert.encode

    def encoded_chunk() -> list[tuple[int, bytes]]:
        out = []
        for record in itertools.islice(source, chunk):
            pairs.add((record.guild_id, record.user_id))
            out.append(encode(record))
        return out

    async with anyio.create_task_group() as tg:
        await tg.start(writer.run)
        pending = await anyio.to_thread.run_sync(encoded_chunk)
        while pending:
            # Encode the next chunk (in a worker thread) while this one is written.
            async with anyio.create_task_group() as step:
                step.start_soon(writer.append_many, pending)
                pending = await anyio.to_thread.run_sync(encoded_chunk)
        tg.cancel_scope.cancel()
    seconds = time.perf_counter() - started
    sizes = [p.stat().st_size for p in wal_dir.iterdir() if p.is_file()]  # noqa: ASYNC240 (clock stopped)
    return LogBuild(records, seconds, sum(sizes), len(sizes), sorted(pairs))


@attrs.frozen
class Timed:
    name: str
    records: int
    seconds: float
    cpu_seconds: float

    @property
    def per_second(self) -> float:
        return self.records / self.seconds


#: How often the rebuild and the export are timed; each is reported by its median run, with every run
#: printed. One run can land in a slow minute of this shared machine: the same rebuild, code unchanged,
#: measured 145k-175k records/s over one evening, and the same export 3.7 s and 5.4 s two minutes apart.
REPEATS = 3


def median_run(runs: list[T], seconds: Callable[[T], float]) -> T:
    """The run whose time is the median of `runs` (an odd count)."""
    return sorted(runs, key=seconds)[len(runs) // 2]


def timed(name: str, func: Callable[[], int]) -> Timed:
    gc.collect()
    started, cpu_started = time.perf_counter(), time.process_time()
    records = func()
    return Timed(name, records, time.perf_counter() - started, time.process_time() - cpu_started)


def read_frames(wal_dir: Path) -> int:
    return sum(1 for _ in iter_raw_frames(wal_dir))


def decode_log(wal_dir: Path) -> int:
    """Read the frames and make each join's row from its payload, as a rebuild does (the log is joins)."""
    frames = 0
    for lsn, _type, payload, _flags, _offset in iter_raw_frames(wal_dir):
        join_row(lsn, payload)
        frames += 1
    return frames


def rebuild_from_log(wal_dir: Path, db_path: Path) -> int:
    # What recovery runs: a big log is rebuilt in parts by worker processes when there are several CPUs
    # (their CPU time is not in this process's CPU seconds).
    return recovery_rebuild(wal_dir, db_path)


#: The live applier's largest batch (records read from the log and applied in one transaction).
APPLIER_BATCH: int = attrs.fields(Applier).batch_max.default or 2048


def apply_live_path(wal_dir: Path, db_path: Path, batch: int = APPLIER_BATCH) -> int:
    """The same records as the live applier applies them: `apply_frames`, one transaction per batch."""
    conn = open_database(db_path)
    applied = 0
    try:
        source = iter_frames(wal_dir)
        while frames := list(itertools.islice(source, batch)):
            applied = apply_frames(conn, frames)
    finally:
        conn.close()
    return applied


@attrs.frozen
class LogFigures:
    built: LogBuild
    reading: Timed
    decoding: Timed
    rebuilt: Timed
    live: Timed
    lookups: LookupResult
    exported: ExportResult


def measure_log(
    directory: Path, records: int, lookup_count: int, seed: int, log: Callable[[str], None]
) -> LogFigures:
    """Write a log of `records` synthetic joins under `directory`, time what is done with it, print the
    figures with `log`; the files are removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="log-", dir=directory) as tmp:
        work = Path(tmp)
        wal_dir = work / "wal"
        built = anyio.run(write_log, wal_dir, records, seed, backend="asyncio")
        pairs = built.pairs
        gc.collect()
        gc.freeze()  # the lookup pairs are the benchmark's, not the rebuild's: keep the GC off them
        try:
            reading = timed("read frames", lambda: read_frames(wal_dir))
            decoding = timed("read+decode", lambda: decode_log(wal_dir))
            # Each run replaces the database the one before built, as `recovery rebuild` does.
            rebuilds = [
                timed("rebuild", lambda: rebuild_from_log(wal_dir, work / "rebuild.sqlite3"))
                for _ in range(REPEATS)
            ]
            rebuilt = median_run(rebuilds, lambda t: t.seconds)
            live = timed("apply_frames", lambda: apply_live_path(wal_dir, work / "live.sqlite3"))
        finally:
            gc.unfreeze()
        (work / "live.sqlite3").unlink()
        db_path = work / "rebuild.sqlite3"
        db_mb = db_path.stat().st_size / 1e6
        lookups = measure_lookups(db_path, pairs, lookups=lookup_count)
        del pairs
        exports = [measure_export(db_path, work / "joins.csv") for _ in range(REPEATS)]
        exported = median_run(exports, lambda e: e.seconds)
        exported = attrs.evolve(exported, peak_rss_mb=max(e.peak_rss_mb for e in exports))

    log("")
    log(
        f"log: {built.records:,} JoinRecorded records, {built.bytes / 1e6:.0f} MB in {built.segments} "
        f"segment(s), written with append_many in {built.seconds:.1f} s (generating and encoding included); "
        f"rebuilt database {db_mb:.0f} MB"
    )
    log(f"{'from the log':<38}{'records':>10}{'s':>7}{'records/s':>11}{'µs each':>9}{'CPU s':>7}")
    for t, label in (
        (reading, "read frames (CRC checked)"),
        (decoding, "read + join rows (join_row)"),
        (rebuilt, f"rebuild_from_log ({parallel_parts(built.records)} part(s)), median"),
        (live, f"live path: apply_frames x{APPLIER_BATCH:,}"),
    ):
        log(
            f"{label:<38}{t.records:>10,}{t.seconds:>7.1f}{t.per_second:>11,.0f}"
            f"{t.seconds / t.records * 1e6:>9.1f}{t.cpu_seconds:>7.1f}"
        )
    log(f"rebuild runs: {', '.join(f'{t.per_second:,.0f}' for t in rebuilds)} records/s (median reported)")
    per = 1e6 / rebuilt.records
    parts = parallel_parts(built.records)
    log(
        f"rebuild per record: read {reading.seconds * per:.1f} µs + decode "
        f"{(decoding.seconds - reading.seconds) * per:.1f} µs + apply "
        f"{(rebuilt.seconds - decoding.seconds) * per:.1f} µs (indexes and members built at the end included)"
        if parts == 1
        # In parts, reading and decoding overlap across processes: only the wall time per record is real.
        else f"rebuild per record: {rebuilt.seconds * per:.1f} µs wall in {parts} processes"
    )
    log(
        f"lookup_user x{lookups.lookups:,} on {built.records:,} joins: p50 {lookups.p50_ms:.3f} ms, "
        f"p99 {lookups.p99_ms:.3f} ms (CPU p99 {lookups.cpu_p99_ms:.3f} ms), max {lookups.max_ms:.3f} ms"
    )
    log(
        f"export CSV: {exported.rows:,} rows, {exported.bytes_written / 1e6:.0f} MB in "
        f"{exported.seconds:.2f} s (CPU {exported.cpu_seconds:.2f} s), peak RSS {exported.peak_rss_mb:.0f} MB"
        f" (median of runs of {', '.join(f'{e.seconds:.2f}' for e in exports)} s; RSS the highest)"
    )

    return LogFigures(built, reading, decoding, rebuilt, live, lookups, exported)
