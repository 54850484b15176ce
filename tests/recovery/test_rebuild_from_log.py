"""Rebuilding from a real log with every kind of record interleaved gives, row for row, the database the
live applier builds from the same log: joins read straight from their payloads (and the ones outside the
encoder's plain shape decoded), everything else decoded and applied in log order."""

from __future__ import annotations

import itertools
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from recovery.faultlab.synthetic import write_log
from recovery.replay import log_records, rebuild_from_log
from service import convert
from service.projection import apply_batch, dump_tables, open_database, projection_digest
from service.records import RECORD_TYPES, JoinRecorded
from tests.recovery.records import varied_records


class Recorded:
    """A Progress that keeps what it was told."""

    def __init__(self) -> None:
        self.started: list[tuple[str, int | None]] = []
        self.advanced = 0
        self.finished = 0

    def start(self, description: str, total: int | None) -> None:
        self.started.append((description, total))

    def advance(self, amount: int) -> None:
        self.advanced += amount

    def finish(self) -> None:
        self.finished += 1


def unusual(payload: bytes, n: int) -> bytes:
    """The same join as JSON the encoder would not write (still what the converter reads): escapes, another
    key order, another UTC offset."""
    data = json.loads(payload)
    if n % 3 == 0:
        return json.dumps(data).encode()  # ASCII escapes for the emoji, spaces after separators
    if n % 3 == 1:
        return json.dumps(dict(reversed(data.items())), separators=(",", ":")).encode()
    at = datetime.fromisoformat(data["timestamp"]).astimezone(timezone(timedelta(hours=2)))
    data["timestamp"] = at.isoformat(sep=" ")
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()


def write_varied_log(wal_dir: Path, n: int = 900) -> int:
    items = [convert.encode(r) for r in varied_records(n, seed=42)]
    join = RECORD_TYPES[JoinRecorded]
    for i in range(5, len(items), 37):  # some joins in another JSON shape, spread over the log
        if items[i][0] == join:
            items[i] = (join, unusual(items[i][1], i))
    assert {code for code, _ in items} == set(RECORD_TYPES.values())  # every kind of record is there
    wal_dir.mkdir(parents=True)
    return write_log(wal_dir, iter(items), segment_bytes=8192, batch=7)


def live_database(wal_dir: Path, path: Path, to_lsn: int) -> list:
    conn = open_database(path)
    try:
        records = log_records(wal_dir, to_lsn=to_lsn)
        while batch := list(itertools.islice(records, 13)):
            apply_batch(conn, batch)
        return [list(dump_tables(conn)), projection_digest(conn)]
    finally:
        conn.close()


def rebuilt_database(path: Path) -> list:
    conn = open_database(path)
    try:
        return [list(dump_tables(conn)), projection_digest(conn)]
    finally:
        conn.close()


# How the rebuild runs: in one process (a small log), or in parts by worker processes (forced with a tiny
# threshold; 3 and 5 parts cut the log inside segments, between erasures and the joins they redact).
MODES = {
    "sequential": {},
    "3 parts": {"parallel_from": 1, "parts": 3},
    "5 parts": {"parallel_from": 1, "parts": 5},
}
modes = pytest.mark.parametrize("mode", list(MODES.values()), ids=list(MODES))


@modes
def test_a_rebuild_from_the_log_equals_the_live_projection_row_for_row(tmp_path: Path, mode: dict):
    wal_dir = tmp_path / "wal"
    last = write_varied_log(wal_dir)
    progress = Recorded()
    assert rebuild_from_log(wal_dir, tmp_path / "rebuilt.sqlite3", progress=progress, **mode) == last
    assert progress.started == [("rebuilding the database from the log", last)]
    assert (progress.advanced, progress.finished) == (last, 1)
    expected = live_database(wal_dir, tmp_path / "live.sqlite3", last)
    assert rebuilt_database(tmp_path / "rebuilt.sqlite3") == expected
    tables = {table for table, _row in expected[0]}
    assert {"joins", "leaves", "members", "staff_ib", "snapshot_invites", "erasures", "join_counts"} <= tables


@modes
def test_a_rebuild_to_an_lsn_equals_the_live_projection_of_that_prefix(tmp_path: Path, mode: dict):
    wal_dir = tmp_path / "wal"
    last = write_varied_log(wal_dir, 400)
    for to_lsn in (1, 57, last // 2):
        assert rebuild_from_log(wal_dir, tmp_path / "rebuilt.sqlite3", to_lsn=to_lsn, **mode) == to_lsn
        expected = live_database(wal_dir, tmp_path / f"live-{to_lsn}.sqlite3", to_lsn)
        assert rebuilt_database(tmp_path / "rebuilt.sqlite3") == expected
