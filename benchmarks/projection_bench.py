"""Measurements of the SQLite projection, as helper functions for `python -m benchmarks.pipeline`.

Run alone for the issue's figures at one million records:

    .venv/bin/python -m benchmarks.projection_bench [--records 1000000]

- `make_join_records`: N synthetic JoinRecorded records (fixed seed; ~400-byte log payloads; several
  guilds, staff members and invite codes; rejoins, ambiguous and unknown joins, flags).
- `measure_apply`: records per second applying them into a fresh database, through `apply_batch` (the
  live applier's path), through `rebuild_database` (records already decoded) and through
  `rebuild_from_frames` (encoded payloads, as a rebuild reads them from the log, decoding included).
- `measure_lookups`: `lookup_user` latency percentiles on a database holding the joins.
- `measure_export`: seconds and peak RSS of a streaming CSV export of every join, in a child process so
  the RSS is the export's own.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import attrs

from service import convert
from service.projection.apply import apply_batch
from service.projection.export import export_csv
from service.projection.queries import lookup_user
from service.projection.rebuild import rebuild_database, rebuild_from_frames
from service.projection.schema import open_database
from service.records import AttributionKind, JoinFlag, JoinRecorded, Record

_GUILDS = (
    ("811111111111111111", "PipVault"),
    ("822222222222222222", "Pip Vault — Signals"),
    ("833333333333333333", "Forex Académie"),
    ("844444444444444444", "تداول العملات"),
    ("855555555555555555", "VIP Lounge 🚀"),
)
_FIRST_NAMES = ("john", "maria", "wei", "fatima", "oleksandr", "aiko", "carlos", "amara", "noah", "ines")


@attrs.frozen
class Staff:
    staff_id: str
    username: str
    codes: tuple[str, ...]


def _staff_of(rng: random.Random, guild_index: int, count: int) -> tuple[Staff, ...]:
    staff = []
    for i in range(count):
        staff_id = str(900_000_000_000_000_000 + guild_index * 1_000 + i)
        codes = tuple(
            "".join(rng.choices("abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789", k=8))
            for _ in range(rng.randint(2, 8))
        )
        staff.append(
            Staff(staff_id, f"{rng.choice(_FIRST_NAMES).title()}Staff{i}#{rng.randint(1, 9999):04d}", codes)
        )
    return tuple(staff)


def iter_join_records(n: int, seed: int = 20261124, users: int | None = None) -> Iterator[JoinRecorded]:
    """N synthetic joins in log order (timestamps rising), reproducible for a given seed.

    About 1 in 8 users joins more than once (rejoins); kinds are mostly exact, with ambiguous (candidates,
    no staff), unknown and vanity joins mixed in, as a busy trading server sees them.
    """
    rng = random.Random(seed)
    user_pool = users if users is not None else max(1, n * 7 // 8)
    staff_by_guild = [_staff_of(rng, g, 12) for g in range(len(_GUILDS))]
    start = datetime(2025, 1, 1, tzinfo=UTC)
    at = start
    uses: dict[str, int] = {}
    for _ in range(n):
        at += timedelta(microseconds=rng.randint(1, 60_000_000))
        g = rng.randrange(len(_GUILDS)) if rng.random() < 0.4 else 0  # one big guild, a few small ones
        guild_id, guild_name = _GUILDS[g]
        user_number = rng.randrange(user_pool)
        name = f"{_FIRST_NAMES[user_number % len(_FIRST_NAMES)]}_{user_number}"
        roll = rng.random()
        staff = rng.choice(staff_by_guild[g])
        code: str | None = rng.choice(staff.codes)
        candidates: tuple[str, ...] = ()
        staff_id: str | None = staff.staff_id
        staff_username: str | None = staff.username
        if roll < 0.80:
            kind = AttributionKind.EXACT
        elif roll < 0.88:
            kind = AttributionKind.AMBIGUOUS
            other = rng.choice(staff_by_guild[g])
            candidates = (code or "", rng.choice(other.codes))
            code = staff_id = staff_username = None
        elif roll < 0.95:
            kind = AttributionKind.UNKNOWN
            code = staff_id = staff_username = None
        else:
            kind = AttributionKind.VANITY
            code, staff_id, staff_username = "pipvault", None, None
        before = after = None
        if code is not None:
            before = uses.get(code, 0)
            after = before + 1
            uses[code] = after
        flags: tuple[JoinFlag, ...] = ()
        if rng.random() < 0.1:
            flags = (JoinFlag.YOUNG_ACCOUNT,)
        yield JoinRecorded(
            timestamp=at,
            guild_id=guild_id,
            guild_name=guild_name,
            user_id=str(1_000_000_000_000_000_000 + user_number * 7919),
            username=name,
            display_name=f"{name.replace('_', ' ').title()} | Trader",
            kind=kind,
            invite_code=code,
            staff_id=staff_id,
            staff_username=staff_username,
            uses_before=before,
            uses_after=after,
            candidates=candidates,
            flags=flags,
            account_created_at=at - timedelta(days=rng.randint(1, 3000), seconds=rng.randint(0, 86399)),
            decided_at=at + timedelta(milliseconds=rng.randint(50, 900)),
        )


def make_join_records(n: int, seed: int = 20261124) -> list[tuple[int, Record]]:
    """N synthetic joins with their LSNs 1..N (see `iter_join_records`)."""
    return list(enumerate(iter_join_records(n, seed), start=1))


@attrs.frozen
class ApplyResult:
    records: int
    batch_size: int
    seconds: float
    cpu_seconds: float  # of this process, SQLite's sorter threads included: the figure on a busy machine
    path: str  # "apply_batch", "rebuild_database" or "rebuild_from_frames"

    @property
    def records_per_second(self) -> float:
        return self.records / self.seconds


def measure_apply(
    entries: list[tuple[int, Record]],
    directory: Path,
    *,
    batch_size: int = 1_000,
    rebuild: bool = False,
    frames: bool = False,
) -> ApplyResult:
    """Time applying `entries` (already built, so only the projection is timed) into a fresh database;
    with `frames`, rebuild from their encoded payloads (decoding timed too, reading the log not)."""
    if frames:
        return _measure_frames(entries, directory, batch_size)
    db_path = directory / ("rebuild.sqlite3" if rebuild else "apply.sqlite3")
    # The records are the benchmark's input, held in memory only here (a real rebuild streams them from
    # the log): freeze them so the cyclic GC does not walk a million of them during the measurement.
    gc.collect()
    gc.freeze()
    if rebuild:
        started, cpu_started = time.perf_counter(), time.process_time()
        rebuild_database(db_path, iter(entries), batch_size=batch_size)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    else:
        conn = open_database(db_path)
        started, cpu_started = time.perf_counter(), time.process_time()
        for i in range(0, len(entries), batch_size):
            apply_batch(conn, entries[i : i + batch_size])
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        conn.close()
    gc.unfreeze()
    path = "rebuild_database" if rebuild else "apply_batch"
    return ApplyResult(len(entries), batch_size, seconds, cpu, path)


def _measure_frames(entries: list[tuple[int, Record]], directory: Path, batch_size: int) -> ApplyResult:
    encoded = [(lsn, *convert.encode(record)) for lsn, record in entries]
    gc.collect()
    gc.freeze()
    started, cpu_started = time.perf_counter(), time.process_time()
    rebuild_from_frames(directory / "frames.sqlite3", iter(encoded), batch_size=batch_size)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    gc.unfreeze()
    (directory / "frames.sqlite3").unlink()
    return ApplyResult(len(entries), batch_size, seconds, cpu, "rebuild_from_frames")


@attrs.frozen
class LookupResult:
    lookups: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    cpu_p99_ms: float  # the thread's own CPU time: what the lookup costs when the machine is shared


def _percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))] * 1e3


def measure_lookups(db_path: Path, user_ids: list[tuple[str, str]], lookups: int = 10_000) -> LookupResult:
    """`lookup_user` latency over random (guild, user) pairs that joined, on a read-only connection."""
    rng = random.Random(7)
    conn = open_database(db_path, readonly=True)
    for guild_id, user_id in user_ids[:200]:  # warm the page cache as a running bot's would be
        lookup_user(conn, guild_id, user_id)
    # The benchmark holds a million (guild, user) pairs, which a bot does not: keep the cyclic GC from
    # walking them in the middle of a timed lookup.
    gc.collect()
    gc.freeze()
    wall: list[float] = []
    cpu: list[float] = []
    for _ in range(lookups):
        guild_id, user_id = rng.choice(user_ids)
        started, cpu_started = time.perf_counter(), time.thread_time()
        result = lookup_user(conn, guild_id, user_id)
        wall.append(time.perf_counter() - started)
        cpu.append(time.thread_time() - cpu_started)
        assert result.latest_join is not None
    conn.close()
    gc.unfreeze()
    return LookupResult(
        lookups,
        p50_ms=_percentile(wall, 0.5),
        p99_ms=_percentile(wall, 0.99),
        max_ms=max(wall) * 1e3,
        cpu_p99_ms=_percentile(cpu, 0.99),
    )


@attrs.frozen
class ExportResult:
    rows: int
    seconds: float
    cpu_seconds: float
    bytes_written: int
    peak_rss_mb: float


def _export_child(db_path: str, out_path: str) -> None:
    conn = open_database(db_path, readonly=True)
    started, cpu_started = time.perf_counter(), time.process_time()
    written = 0
    with open(out_path, "wb") as out:
        for chunk in export_csv(conn):
            out.write(chunk)
            written += len(chunk)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    print(f"{seconds} {cpu} {written} {_peak_rss_kb()}")


def _peak_rss_kb() -> int:
    """This process's peak RSS. VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec from the parent
    that forked us (here the benchmark, holding a million records), VmHWM belongs to our own memory."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux


def measure_export(db_path: Path, out_path: Path) -> ExportResult:
    """Export every join to CSV in a fresh child process, whose peak RSS is the export's own."""
    code = "import sys; from benchmarks.projection_bench import _export_child; _export_child(*sys.argv[1:])"
    done = subprocess.run(
        [sys.executable, "-c", code, str(db_path), str(out_path)],
        check=True,
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    seconds, cpu, written, peak_kb = done.stdout.split()
    conn = open_database(db_path, readonly=True)
    rows = int(conn.execute("SELECT count(*) FROM joins").get)
    conn.close()
    return ExportResult(rows, float(seconds), float(cpu), int(written), int(peak_kb) / 1024)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument(
        "--batch-size", type=int, default=1_000, help="apply_batch batch size (0: skip the live path)"
    )
    parser.add_argument("--rebuild-batch-size", type=int, default=50_000)
    parser.add_argument("--rebuild-runs", type=int, default=1, help="rebuild this often, report each")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    entries = make_join_records(args.records)
    print(f"built {len(entries):,} records in {time.perf_counter() - started:.1f} s")
    with tempfile.TemporaryDirectory(prefix="projection-bench-") as tmp:
        directory = Path(tmp)
        results = [measure_apply(entries, directory, batch_size=args.batch_size)] if args.batch_size else []
        for _ in range(args.rebuild_runs):
            results.append(
                measure_apply(
                    entries, directory, batch_size=args.rebuild_batch_size, rebuild=True, frames=True
                )
            )
            results.append(
                measure_apply(entries, directory, batch_size=args.rebuild_batch_size, rebuild=True)
            )
        for result in results:
            print(
                f"{result.path:>19} batch {result.batch_size:>6,}: {result.records:,} records in "
                f"{result.seconds:.2f} s = {result.records_per_second:,.0f} records/s "
                f"(CPU {result.cpu_seconds:.2f} s)"
            )
        pairs = sorted({(r.guild_id, r.user_id) for _, r in entries if isinstance(r, JoinRecorded)})
        del entries
        gc.collect()
        db_path = directory / "rebuild.sqlite3"
        lookups = measure_lookups(db_path, pairs)
        print(
            f"lookup_user x{lookups.lookups:,}: p50 {lookups.p50_ms:.3f} ms, p99 {lookups.p99_ms:.3f} ms, "
            f"max {lookups.max_ms:.3f} ms (CPU p99 {lookups.cpu_p99_ms:.3f} ms)"
        )
        exported = measure_export(db_path, directory / "joins.csv")
        print(
            f"export_csv: {exported.rows:,} rows, {exported.bytes_written / 1e6:.0f} MB in "
            f"{exported.seconds:.2f} s (CPU {exported.cpu_seconds:.2f} s), "
            f"peak RSS {exported.peak_rss_mb:.0f} MB"
        )
        print(f"database size {os.path.getsize(db_path) / 1e6:.0f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
