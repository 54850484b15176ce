"""Pipeline benchmark: the whole service end to end, and the log-sized operations around it, in one run.

    python -m benchmarks.pipeline [--quick] [--dir DIR]

Fixed seeds; the sizes are printed with the figures. Everything runs in this process on the asyncio backend
(production's), on one disk (a temporary directory under ./data/bench by default).

1. End to end (`e2e`): real joins through `ScriptedGateway` events → `AttributionActor` (the pure core) →
   WAL writer (group commit, fdatasync) → applier → SQLite, built with `Service.build` and counted until
   the applier has applied everything the joins made durable. 100,000 joins over 400 guilds (4 staff
   invites each), in two modes:

   * spread: each join goes to a random guild through a random one of its invites. One fetch per join
     or so, and two joins of one guild on different invites within one fetch window are (rightly)
     ambiguous: the attribution core does its full work. This is the RESULT figure `e2e_joins_per_s`,
     because it is the general case and the slower one.
   * bursts: joins come in bursts of 5 to 20 per guild, and each guild's joins all use one invite, so
     every delta is on one code and every join is exact; one fetch serves many joins.

   The scripted gateway is in memory, so the only delay between a join and the core seeing it is the queue
   in front of the core. The core's rule (a fetch is compared only `gateway_latency` after its answer, so
   every join it counted has been seen) holds only if that delay stays below `gateway_latency`; the
   benchmark therefore uses `gateway_latency=250 ms`, `clock_skew=10 ms`, `min_fetch_gap=1 ms` (in place
   of 3 s / 1 s / 250 ms, which are for Discord's network), keeps the queue in front of the core short
   (gateway buffer 32, actor inbox 64 instead of 1024), measures that delay for every join (`late`: joins
   that took longer than gateway_latency, which a loaded machine's scheduling stalls can cause), and
   checks every credited join against the invite it truly used (`wrong` must be 0).

   The joins are offered as fast as the service takes them (the gateway's bounded stream pushes back).
   Applier lag is recorded at every advance of the durable and applied watermarks: records durable but
   not yet applied, and per record the time from durable to applied.

   Baseline (`naive`): what a user would build from the brief ("write JSON, write CSV, update DB"): one
   task takes each join in turn, fetches the invites and credits the first code whose uses rose, then
   appends a JSON line and a CSV line (flushed, not fsynced) and inserts a row into SQLite with
   synchronous=FULL (journal_mode=WAL, so one fsync per join: the kinder of SQLite's two modes), awaiting
   each join before the next. Same gateway, same spread workload, fewer joins (it is fsync-bound).

2. Rebuild: a log of 1,000,000 synthetic JoinRecorded records (`benchmarks.projection_bench`), written
   with the WAL writer's `append_many` into real segments; then, timed separately: reading the frames
   (CRC checked, `wal.iter_raw_frames`), reading them and making the joins' rows (`join_rows.join_row`),
   `recovery.replay.rebuild_from_log` (`rebuild_from_frames` over `iter_raw_frames`, in parts by worker
   processes when there are several CPUs; the RESULT figure: it includes reading and decoding the log,
   the real cost; run three times, the median reported and every run printed), and, as the baseline, the
   same records through the live applier's path (`apply_frames`, 2,048 records per transaction).
3. Lookups: `lookup_user` p50/p99 on the rebuilt database (1,000,000 joins).
4. Export: all 1,000,000 rows to CSV in a child process: seconds and peak RSS (VmHWM); three runs, the
   median time and the highest RSS reported.

Items 2 to 4 are measured by `benchmarks/pipeline_log.py` (`measure_log`), the naive baseline by
`benchmarks/pipeline_naive.py`, both on the scripted world of `benchmarks/pipeline_world.py`; this module
runs item 1 and the report.

Targets: e2e ≥ 5,000 joins/s, rebuild ≥ 150,000 records/s, lookup p99 ≤ 1 ms, export of 1M rows ≤ 5 s in
≤ 200 MB. The last line printed is `RESULT {json}`.
"""

from __future__ import annotations

import argparse
import bisect
import gc
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import attrs

from benchmarks.pipeline_log import measure_log
from benchmarks.pipeline_naive import run_naive
from benchmarks.pipeline_world import (
    BENCH_CORE,
    GATEWAY_BUFFER,
    INBOX_SIZE,
    SEED,
    STAFF_PER_GUILD,
    build_world,
    plan_joins,
)
from benchmarks.wal import machine
from service.app import Service
from service.attribution_actor import Durable
from service.config import load_config
from service.events import Event, MemberJoined
from service.gateway import ScriptedGateway
from service.projection import open_database
from service.records import JoinRecorded
from wal import Watermark

TARGETS = {
    "e2e_joins_per_s": (">=", 5_000),
    "rebuild_records_per_s": (">=", 150_000),
    "lookup_p99_ms": ("<=", 1.0),
    "export_1m_s": ("<=", 5.0),
    "export_peak_rss_mb": ("<=", 200),
}


@attrs.frozen
class Sizes:
    e2e_joins: int
    guilds: int
    naive_joins: int
    log_records: int
    lookups: int


FULL = Sizes(e2e_joins=100_000, guilds=400, naive_joins=5_000, log_records=1_000_000, lookups=20_000)
QUICK = Sizes(e2e_joins=10_000, guilds=400, naive_joins=1_000, log_records=100_000, lookups=5_000)


def pct(ordered: list[float], q: float) -> float:
    """The q-quantile of an already sorted list (0 for an empty one)."""
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --- end to end through the service ---------------------------------------------------------------------


@attrs.frozen
class E2EResult:
    mode: str
    joins: int
    guilds: int
    seconds: float  # until every join is applied
    durable_seconds: float  # until every join is durable (the applier may still be catching up)
    cpu_seconds: float
    kinds: dict[str, int]
    wrong: int  # joins credited to a staff member other than the one whose invite they used
    late: int  # joins that reached the core later than gateway_latency after the gateway emitted them
    fetches: int
    delay_p99_ms: float  # join created at the gateway → the core handles it
    delay_max_ms: float
    lag_records_p99: float  # durable LSN − applied LSN, sampled at every watermark advance
    lag_records_max: float
    lag_ms_p50: float  # per record: durable → applied
    lag_ms_p99: float
    lag_ms_max: float
    records: int  # log records written (joins, and the snapshots the core logs)

    @property
    def per_second(self) -> float:
        return self.joins / self.seconds

    @property
    def cpu_us_per_join(self) -> float:
        return self.cpu_seconds / self.joins * 1e6


def _record_advances(mark: Watermark, log: list[tuple[float, int]]) -> None:
    """Log (time, value) at every rise of a watermark (an instance attribute shadows the method)."""
    advance = mark.advance
    clock = time.perf_counter

    def recording(value: int) -> None:
        if value > mark.value:
            advance(value)
            log.append((clock(), value))

    mark.advance = recording  # type: ignore[method-assign]


def _lag_figures(
    durable: list[tuple[float, int]], applied: list[tuple[float, int]], first_lsn: int
) -> tuple[list[float], list[float]]:
    """(records behind at each advance, seconds from durable to applied per record)."""
    behind: list[float] = []
    events = sorted([(t, 0, v) for t, v in durable] + [(t, 1, v) for t, v in applied])
    d = a = first_lsn - 1
    for _t, kind, value in events:
        if kind == 0:
            d = value
        else:
            a = value
        behind.append(max(0, d - a))
    durable_times = [t for t, _ in durable]
    durable_values = [v for _, v in durable]
    per_record: list[float] = []
    previous = first_lsn - 1
    for t_applied, value in applied:
        for lsn in range(previous + 1, value + 1):
            i = bisect.bisect_left(durable_values, lsn)
            if i < len(durable_times):
                per_record.append(max(0.0, t_applied - durable_times[i]))
        previous = value
    return behind, per_record


def _wrong_credits(db_path: Path, truth: dict[str, str]) -> tuple[int, int]:
    """(rows, rows credited to the wrong staff member) in the projection."""
    conn = open_database(db_path, readonly=True)
    try:
        rows = conn.execute("SELECT CAST(user_id AS TEXT), CAST(staff_id AS TEXT) FROM joins").fetchall()
    finally:
        conn.close()
    wrong = sum(
        1 for user_id, staff_id in rows if staff_id is not None and truth.get(str(user_id)) != staff_id
    )
    return len(rows), wrong


async def run_e2e(directory: Path, mode: str, joins: int, guilds: int, seed: int = SEED) -> E2EResult:
    config = load_config(None, {"INVITE_LEDGER_DATA_DIR": str(directory / "data")})
    gateway = ScriptedGateway(buffer=GATEWAY_BUFFER)
    world = build_world(gateway, guilds)
    plan = plan_joins(gateway, world, joins, mode, seed)
    truth = {j.member.user_id: j.staff_id for j in plan}

    durable_send, durable_receive = anyio.create_memory_object_stream[Durable](joins + 65_536)
    service = Service.build(config, gateway, core=BENCH_CORE, durable_out=durable_send)
    service.attribution.inbox_size = INBOX_SIZE

    delays: list[float] = []
    handle = service.attribution.attributor.handle
    wall = time.time

    def timed_handle(event: Event) -> Any:
        if type(event) is MemberJoined:
            delays.append(wall() - event.at.timestamp())
        return handle(event)

    service.attribution.attributor.handle = timed_handle  # type: ignore[method-assign]
    durable_log: list[tuple[float, int]] = []
    applied_log: list[tuple[float, int]] = []
    _record_advances(service.ledger.writer.durable, durable_log)
    _record_advances(service.ledger.applier.applied, applied_log)

    all_logged = anyio.Event()

    async def count_durable_joins() -> None:
        # Takes what is queued in one step: one step per record would cost the event loop a ~tenth of
        # the service's own work per join, for counting alone (production without a join-log channel
        # has no such consumer; with one, announcements beyond its rate limit are dropped, not queued).
        seen = 0
        async with durable_receive:
            while True:
                try:
                    durable = await durable_receive.receive()
                except anyio.EndOfStream:
                    return
                while True:
                    if type(durable.record) is JoinRecorded:
                        seen += 1
                        if seen == joins:
                            all_logged.set()
                    try:
                        durable = durable_receive.receive_nowait()
                    except (anyio.WouldBlock, anyio.EndOfStream):
                        break

    async with anyio.create_task_group() as tg:
        tg.start_soon(count_durable_joins)
        await tg.start(service.run)
        for guild_id, _ in world:
            await gateway.make_available(guild_id, with_invites=True)
        ledger = service.ledger
        # Let the first snapshots reach the log and the database before the clock starts.
        await anyio.sleep(0.3)
        await ledger.applier.applied.wait_for(ledger.writer.durable.value)
        first_lsn = ledger.writer.durable.value + 1
        durable_log.clear()
        applied_log.clear()
        fetches_before = gateway.fetches
        join = gateway.join
        # The plan (100,000 members) is the benchmark's, not the service's: keep the cyclic GC off it.
        gc.collect()
        gc.freeze()
        started, cpu_started = time.perf_counter(), time.process_time()
        for j in plan:
            await join(j.guild_id, j.member, j.code)
        await all_logged.wait()
        durable_seconds = time.perf_counter() - started
        await ledger.applier.applied.wait_for(ledger.writer.durable.value)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        gc.unfreeze()
        last_lsn = ledger.writer.durable.value
        fetches = gateway.fetches - fetches_before
        service.stop()
        durable_send.close()
    rows, wrong = _wrong_credits(config.db_path, truth)
    if rows != joins:
        raise RuntimeError(f"{mode}: {rows} joins in the database, {joins} expected")
    conn = open_database(config.db_path, readonly=True)
    query = "SELECT kind, count(*) FROM joins GROUP BY kind ORDER BY kind"
    kinds: dict[str, int] = {str(kind): int(count) for kind, count in conn.execute(query)}
    conn.close()
    behind, per_record = _lag_figures(durable_log, applied_log, first_lsn)
    behind.sort()
    per_record.sort()
    delays.sort()
    limit = BENCH_CORE.gateway_latency.total_seconds()
    return E2EResult(
        mode=mode,
        joins=joins,
        guilds=guilds,
        seconds=seconds,
        durable_seconds=durable_seconds,
        cpu_seconds=cpu,
        kinds=kinds,
        wrong=wrong,
        late=len(delays) - bisect.bisect_right(delays, limit),
        fetches=fetches,
        delay_p99_ms=pct(delays, 0.99) * 1e3,
        delay_max_ms=(delays[-1] if delays else 0.0) * 1e3,
        lag_records_p99=pct(behind, 0.99),
        lag_records_max=behind[-1] if behind else 0,
        lag_ms_p50=pct(per_record, 0.5) * 1e3,
        lag_ms_p99=pct(per_record, 0.99) * 1e3,
        lag_ms_max=(per_record[-1] if per_record else 0.0) * 1e3,
        records=last_lsn - first_lsn + 1,
    )


# --- the run --------------------------------------------------------------------------------------------


def ms(value: timedelta) -> str:
    return f"{value.total_seconds() * 1e3:g}"


def load_average() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def run(directory: Path, sizes: Sizes, *, log: Callable[[str], None] = print) -> dict[str, Any]:
    load_before = load_average()
    log(f"pipeline benchmark, {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC, {machine()}")
    log(f"load average before: {load_before} (a shared machine: other work competes for CPU and disk)")
    core = BENCH_CORE
    log(
        f"sizes: e2e {sizes.e2e_joins:,} joins per mode over {sizes.guilds} guilds x {STAFF_PER_GUILD} "
        f"invites; naive {sizes.naive_joins:,} joins; log {sizes.log_records:,} records; "
        f"{sizes.lookups:,} lookups"
    )
    log(
        f"asyncio backend; core timing for an in-memory gateway: gateway_latency {ms(core.gateway_latency)} "
        f"ms, clock_skew {ms(core.clock_skew)} ms, min_fetch_gap {ms(core.min_fetch_gap)} ms; "
        f"gateway buffer {GATEWAY_BUFFER}, actor inbox {INBOX_SIZE}"
    )

    def e2e(mode: str, joins: int, tag: str) -> E2EResult:
        where = directory / f"e2e-{tag}"
        try:
            return anyio.run(run_e2e, where, mode, joins, sizes.guilds, backend="asyncio")
        finally:
            shutil.rmtree(where, ignore_errors=True)

    # A warm-up run, not counted: imports, generated converters, thread start.
    e2e("spread", min(2_000, sizes.e2e_joins), "warmup")
    spread = e2e("spread", sizes.e2e_joins, "spread")
    bursts = e2e("bursts", sizes.e2e_joins, "bursts")
    naive_dir = directory / "naive"
    try:
        naive = anyio.run(run_naive, naive_dir, sizes.naive_joins, sizes.guilds, backend="asyncio")
    finally:
        shutil.rmtree(naive_dir, ignore_errors=True)

    log("")
    log("end to end: joins offered as fast as the gateway takes them, timed until all are applied")
    log(
        f"{'contender':<9}{'joins':>8}{'durable/applied s':>18}{'joins/s':>8}{'CPU µs':>7}{'fetches':>8}"
        f"{'wrong':>6}{'late':>5}{'delay p99/max':>14}{'lag p99':>8}{'lag p50/p99/max ms':>20}  kinds"
    )
    for r in (spread, bursts):
        log(
            f"{r.mode:<9}{r.joins:>8,}{f'{r.durable_seconds:.1f} / {r.seconds:.1f}':>18}"
            f"{r.per_second:>8,.0f}{r.cpu_us_per_join:>7.0f}"
            f"{r.fetches:>8,}{r.wrong:>6}{r.late:>5}{f'{r.delay_p99_ms:.0f}/{r.delay_max_ms:.0f} ms':>14}"
            f"{r.lag_records_p99:>8,.0f}{f'{r.lag_ms_p50:.0f}/{r.lag_ms_p99:.0f}/{r.lag_ms_max:.0f}':>20}"
            f"  {r.kinds}"
        )
    naive_us = naive.cpu_seconds / naive.joins * 1e6
    log(
        f"{'naive':<9}{naive.joins:>8,}{naive.seconds:>18.1f}{naive.per_second:>8,.0f}{naive_us:>7.0f}"
        f"{naive.joins:>8,}{naive.wrong:>6}{'':>5}{'':>14}{'':>8}{'':>20}  credited nobody: {naive.unknown}"
    )
    log(
        "(joins/s: joins / seconds until all are applied; CPU µs: process CPU per join, all threads; delay: "
        "gateway → core; lag: records durable but not yet applied, and per record durable → applied)"
    )

    logged = measure_log(directory, sizes.log_records, sizes.lookups, SEED, log)
    reading, decoding, rebuilt, live = logged.reading, logged.decoding, logged.rebuilt, logged.live
    lookups, exported = logged.lookups, logged.exported
    load_after = load_average()
    log(f"load average after: {load_after}")

    summary: dict[str, Any] = {
        "e2e_joins_per_s": round(spread.per_second),
        "rebuild_records_per_s": round(rebuilt.per_second),
        "lookup_p99_ms": round(lookups.p99_ms, 3),
        "export_1m_s": round(exported.seconds, 2),
        "export_peak_rss_mb": round(exported.peak_rss_mb, 1),
        "e2e_mode": "spread",
        "e2e_bursts_joins_per_s": round(bursts.per_second),
        "e2e_durable_joins_per_s": round(spread.joins / spread.durable_seconds),
        "e2e_bursts_durable_joins_per_s": round(bursts.joins / bursts.durable_seconds),
        "naive_joins_per_s": round(naive.per_second),
        "e2e_vs_naive": round(spread.per_second / naive.per_second, 1),
        "e2e_cpu_us_per_join": round(spread.cpu_us_per_join),
        "e2e_bursts_cpu_us_per_join": round(bursts.cpu_us_per_join),
        "e2e_wrong_credits": spread.wrong + bursts.wrong,
        "e2e_late_joins": spread.late + bursts.late,
        "naive_wrong_credits": naive.wrong,
        "e2e_exact_share": round(spread.kinds.get("exact", 0) / spread.joins, 3),
        "gateway_delay_max_ms": round(max(spread.delay_max_ms, bursts.delay_max_ms), 1),
        "applier_lag_p99_records": spread.lag_records_p99,
        "applier_lag_p99_ms": round(spread.lag_ms_p99, 1),
        "applier_lag_bursts_p99_records": bursts.lag_records_p99,
        "applier_lag_bursts_p99_ms": round(bursts.lag_ms_p99, 1),
        "rebuild_live_path_records_per_s": round(live.per_second),
        "rebuild_vs_live": round(rebuilt.per_second / live.per_second, 2),
        "decode_records_per_s": round(decoding.per_second),
        "read_frames_per_s": round(reading.per_second),
        "lookup_p50_ms": round(lookups.p50_ms, 3),
        "lookup_cpu_p99_ms": round(lookups.cpu_p99_ms, 3),
        "export_rows": exported.rows,
        "e2e_joins": sizes.e2e_joins,
        "guilds": sizes.guilds,
        "naive_joins": sizes.naive_joins,
        "log_records": sizes.log_records,
        "load_before": load_before,
        "load_after": load_after,
    }
    log("")
    for key, (op, target) in TARGETS.items():
        value = summary[key]
        met = value >= target if op == ">=" else value <= target
        log(f"target {key} {op} {target:,}: {value:,} {'met' if met else 'MISSED'}")
    if summary["e2e_wrong_credits"]:
        log(f"ERROR: {summary['e2e_wrong_credits']} joins credited to the wrong staff member")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.pipeline", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, under 60 seconds")
    parser.add_argument("--dir", type=Path, default=Path("data/bench"), help="where the files go (same disk)")
    for field in attrs.fields(Sizes):
        parser.add_argument(f"--{field.name.replace('_', '-')}", type=int, help="override this size")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    sizes = attrs.evolve(
        sizes, **{f.name: getattr(args, f.name) for f in attrs.fields(Sizes) if getattr(args, f.name)}
    )
    args.dir.mkdir(parents=True, exist_ok=True)
    directory = Path(tempfile.mkdtemp(prefix="pipeline-bench-", dir=args.dir))
    started = time.perf_counter()
    try:
        summary = run(directory, sizes)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    print(f"wall time {time.perf_counter() - started:.1f} s")
    print("RESULT " + json.dumps(summary))
    return 1 if summary["e2e_wrong_credits"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
