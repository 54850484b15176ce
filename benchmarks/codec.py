"""Per-record CPU cost of the live path's record codec: encoding a join for the WAL, and the applier.

    python -m benchmarks.codec [--records 20000] [--repeat 5]

The records are the pipeline benchmark's synthetic joins (`iter_join_records`, fixed seed). Each figure is
CPU µs per record (process time, so a busy shared machine inflates it less than wall time), the best of
`--repeat` rounds, with the load average printed beside it:

- encode: `convert._generic_payload` (cattrs + json, what every record took before) against
  `convert.encode` (JoinRecorded's hand-written encoder);
- applier: what the applier did per batch before (decode every frame with the converter, then
  `apply_batch`) against `apply_frames` (join rows straight from the payloads), 2,048 records per
  transaction into a fresh in-memory database; and the decode step alone, which ran on the event loop.
"""

from __future__ import annotations

import argparse
import gc
import os
import time
from collections.abc import Callable

import apsw

from benchmarks.projection_bench import iter_join_records
from service import convert
from service.projection import apply_batch, apply_frames, open_database
from wal import LogEntry

BATCH = 2048


def best_cpu_us(func: Callable[[], int], repeat: int) -> float:
    """The lowest CPU µs per record over `repeat` runs of `func` (which returns its record count)."""
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        started = time.process_time()
        n = func()
        best = min(best, (time.process_time() - started) / n * 1e6)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.codec", description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    records = list(iter_join_records(args.records))
    frames = [LogEntry(lsn, *convert.encode(r), segment="s", offset=0) for lsn, r in enumerate(records, 1)]
    batches = [frames[i : i + BATCH] for i in range(0, len(frames), BATCH)]

    def encode_generic() -> int:
        for r in records:
            convert._generic_payload(r)
        return len(records)

    def encode_now() -> int:
        for r in records:
            convert.encode(r)
        return len(records)

    def decode_only() -> int:
        for f in frames:
            convert.decode(f.record_type, f.payload)
        return len(frames)

    def into_fresh_db(apply: Callable[[apsw.Connection, list[LogEntry]], object]) -> Callable[[], int]:
        def run() -> int:
            conn = open_database(":memory:")
            try:
                for batch in batches:
                    apply(conn, batch)
            finally:
                conn.close()
            return len(frames)

        return run

    def decode_then_apply_batch(conn: apsw.Connection, batch: list[LogEntry]) -> object:
        return apply_batch(conn, [(f.lsn, convert.decode(f.record_type, f.payload)) for f in batch])

    print(f"{args.records:,} joins, best of {args.repeat}; load average {os.getloadavg()}")
    figures = [
        ("encode, generic cattrs + json (before)", encode_generic),
        ("encode, convert.encode (now)", encode_now),
        ("applier decode on the event loop (before)", decode_only),
        ("applier, decode + apply_batch (before)", into_fresh_db(decode_then_apply_batch)),
        ("applier, apply_frames (now)", into_fresh_db(apply_frames)),
    ]
    for name, func in figures:
        print(f"{name:45s} {best_cpu_us(func, args.repeat):6.2f} µs CPU/record")
    print(f"load average after {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
