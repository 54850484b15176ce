"""The benchmark's fast-written log reads back as the records it was written from."""

from __future__ import annotations

from pathlib import Path

from recovery.faultlab.synthetic import synthetic_records, write_log
from recovery.replay import log_records


def test_synthetic_records_round_trip_through_the_log(tmp_path: Path) -> None:
    pairs = list(synthetic_records(12_000, seed=3))
    kinds = {type(record).__name__ for record, _ in pairs}
    assert kinds == {"JoinRecorded", "MemberLeft", "InviteSnapshotTaken"}
    last = write_log(tmp_path / "wal", iter([item for _, item in pairs]), segment_bytes=1 << 20)
    assert last == 12_000
    assert [record for _, record in log_records(tmp_path / "wal")] == [record for record, _ in pairs]
