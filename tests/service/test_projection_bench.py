"""The projection benchmark's helpers work at a small size (the pipeline benchmark calls them at 1M)."""

from __future__ import annotations

import itertools
from pathlib import Path

from benchmarks.projection_bench import (
    make_join_records,
    measure_apply,
    measure_export,
    measure_lookups,
)
from service import convert
from service.projection import open_database, projection_digest
from service.records import AttributionKind, JoinRecorded


def test_synthetic_records_are_reproducible_realistic_and_varied():
    entries = make_join_records(2_000)
    assert entries == make_join_records(2_000)
    assert [lsn for lsn, _ in entries] == list(range(1, 2_001))
    records = [r for _, r in entries]
    assert all(isinstance(r, JoinRecorded) for r in records)
    sizes = [len(convert.encode(r)[1]) for r in records]
    assert 300 <= sum(sizes) / len(sizes) <= 550  # about 400-byte log payloads
    assert len({r.guild_id for r in records}) >= 3
    assert len({r.staff_id for r in records if r.staff_id}) >= 10
    assert {AttributionKind.EXACT, AttributionKind.AMBIGUOUS, AttributionKind.UNKNOWN} <= {
        r.kind for r in records
    }
    assert len({r.user_id for r in records}) < len(records)  # some members join again
    assert all(r.timestamp < s.timestamp for r, s in itertools.pairwise(records))


def test_measurements_run_and_both_apply_paths_build_the_same_database(tmp_path: Path):
    entries = make_join_records(3_000)
    live = measure_apply(entries, tmp_path, batch_size=500)
    bulk = measure_apply(entries, tmp_path, batch_size=1_000, rebuild=True)
    assert live.records == bulk.records == 3_000 and live.records_per_second > 0
    digests = set()
    for name in ("apply.sqlite3", "rebuild.sqlite3"):
        conn = open_database(tmp_path / name)
        digests.add(projection_digest(conn))
        conn.close()
    assert len(digests) == 1

    pairs = sorted({(r.guild_id, r.user_id) for _, r in entries if isinstance(r, JoinRecorded)})
    lookups = measure_lookups(tmp_path / "rebuild.sqlite3", pairs, lookups=200)
    assert 0 < lookups.p50_ms <= lookups.p99_ms <= lookups.max_ms

    exported = measure_export(tmp_path / "rebuild.sqlite3", tmp_path / "joins.csv")
    assert exported.rows == 3_000
    assert exported.bytes_written == (tmp_path / "joins.csv").stat().st_size
    assert 0 < exported.peak_rss_mb < 200
