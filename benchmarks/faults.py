"""Fault campaigns as a benchmark: how many crashes, how many acknowledged joins, how many lost (must be 0).

    python -m benchmarks.faults [--quick] [--dir DIR] [--skip-1m]

Runs (see `recovery.faultlab` for each one's story):

1. kill -9 of the running service (a real child process) at random moments during a stream of joins;
2. power loss under the log at many crash points (whole, partial and reordered unsynced writes lost);
6. the whole data directory lost, then `invite-ledger restore` from S3 (moto on 127.0.0.1) in a separate
   process with only AWS_* variables;

and times start-up recovery of a 1,000,000-record log whose database is 10,000 records behind (the log and
database are built once and kept under DIR/startup-1m for later runs). The last line printed is
`RESULT {json}` with crashes, acknowledged, lost, duplicated, restored_from_backup, recovery_p99_ms and
startup_recovery_1m_s.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import math
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from recovery.faultlab import kill9, powerloss, s3
from recovery.faultlab.invariants import Tally
from recovery.faultlab.synthetic import synthetic_records, write_log
from recovery.startup import recover
from service.config import load_config
from service.projection import rebuild_database

STARTUP_RECORDS = 1_000_000
STARTUP_BEHIND = 10_000
_CASE_VERSION = "1"  # bump when the synthetic log changes, so a kept case is rebuilt


def _startup_case(root: Path, records: int, behind: int) -> Path:
    """A data directory: a log of `records` records and a database `behind` records short of it, plus a
    pristine copy of that database; built once, reused while its marker matches."""
    case = root / f"startup-{records}"
    marker = case / "case.json"
    wanted = {"version": _CASE_VERSION, "records": records, "behind": behind}
    if marker.exists() and json.loads(marker.read_text()) == wanted:
        return case
    shutil.rmtree(case, ignore_errors=True)
    (case / "data" / "wal").mkdir(parents=True)
    started = time.perf_counter()
    kept: list[Any] = []

    def items() -> Any:
        for record, item in synthetic_records(records):
            if len(kept) < records - behind:
                kept.append(record)
            yield item

    write_log(case / "data" / "wal", items())
    gc.freeze()  # a million records held only to build the database: keep the collector off them
    rebuild_database(case / "base.sqlite3", enumerate(kept, start=1))
    gc.unfreeze()
    kept.clear()
    marker.write_text(json.dumps(wanted))
    print(f"built the {records:,}-record case in {time.perf_counter() - started:.0f} s (kept in {case})")
    return case


def startup_recovery(
    root: Path, *, records: int = STARTUP_RECORDS, behind: int = STARTUP_BEHIND, runs: int = 3
) -> dict[str, Any]:
    case = _startup_case(root, records, behind)
    config = load_config(
        None, {"INVITE_LEDGER_DATA_DIR": str(case / "data"), "INVITE_LEDGER_BACKUP_TARGETS": ""}
    )
    walls, cpus, lines, timings = [], [], [], []
    for _ in range(runs):
        for suffix in ("", "-wal", "-shm"):
            Path(str(config.db_path) + suffix).unlink(missing_ok=True)
        shutil.copyfile(case / "base.sqlite3", config.db_path)
        cpu = time.process_time()
        report = recover(config, progress=False)
        cpus.append(time.process_time() - cpu)
        walls.append(report.seconds)
        lines.append(report.line)
        timings.append(dict(report.timings))
        assert report.applied_records == behind and report.applied_lsn == records
    best = walls.index(statistics.median(walls)) if runs % 2 else 0
    return {
        "median_s": round(statistics.median(walls), 2),
        "cpu_median_s": round(statistics.median(cpus), 2),
        "runs_s": [round(w, 2) for w in walls],
        "timings": {k: round(v, 3) for k, v in timings[best].items()},
        "line": lines[best],
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def _p99(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)], 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short campaigns (a minute or two)")
    parser.add_argument("--dir", type=Path, default=Path("data/bench"), help="where the 1M case is kept")
    parser.add_argument("--skip-1m", action="store_true", help="leave out the 1,000,000-record start-up")
    parser.add_argument("--only-1m", action="store_true", help="only the 1,000,000-record start-up")
    args = parser.parse_args(argv)
    quick = args.quick
    # The backup outage is on purpose: its retry warnings would bury the figures.
    logging.basicConfig(level=logging.ERROR)
    args.dir.mkdir(parents=True, exist_ok=True)
    tallies: list[Tally] = []
    with tempfile.TemporaryDirectory(prefix="faults-", dir=args.dir) as scratch:
        work = Path(scratch)
        campaigns = (
            lambda: kill9.run(work / "kill9", rounds=20 if quick else 60),
            lambda: powerloss.run(work / "powerloss", rounds=30 if quick else 120),
            lambda: s3.run(work / "s3", joins=150 if quick else 600, outage=not quick),
        )
        for campaign in () if args.only_1m else campaigns:
            started = time.perf_counter()
            tally = campaign()
            print(f"{tally.line()} ({time.perf_counter() - started:.1f} s)")
            tallies.append(tally)
    startup = None if args.skip_1m else startup_recovery(args.dir)
    if startup is not None:
        print(f"start-up recovery, {STARTUP_RECORDS:,} records, {STARTUP_BEHIND:,} behind: {startup['line']}")
        wall, cpu = startup["median_s"], startup["cpu_median_s"]
        print(f"  median {wall} s wall, {cpu} s CPU; runs {startup['runs_s']}")
        print(f"  parts of the median run: {startup['timings']}; load average {startup['load_average']}")
    result = {
        "crashes": sum(t.crashes for t in tallies),
        "acknowledged": sum(t.acknowledged for t in tallies),
        "lost": sum(t.lost for t in tallies),
        "duplicated": sum(t.duplicated for t in tallies),
        "mismatches": sum(t.mismatches for t in tallies),
        "restored_from_backup": sum(int(t.notes.get("restored_from_backup", 0)) for t in tallies),
        "recovery_p99_ms": _p99([ms for t in tallies for ms in t.recovery_ms]),
        "startup_recovery_1m_s": None if startup is None else startup["median_s"],
        "startup_recovery_1m_cpu_s": None if startup is None else startup["cpu_median_s"],
        "campaigns": [t.summary() for t in tallies],
        "quick": quick,
    }
    print("RESULT " + json.dumps(result, default=str))
    return 0 if result["lost"] == 0 and result["duplicated"] == 0 and result["mismatches"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
