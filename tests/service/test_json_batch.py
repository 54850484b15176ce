"""The joins of a run travel to SQLite as one JSON text (`json_batch`): the rows written must be the ones
`executemany` writes, value for value, and what JSON cannot carry the same way must meet the old outcome.

Compared: `apply_frames` (the JSON way) against `apply_batch` (row by row, the converter's records), the
whole database, on joins with hostile text, odd ids and repeated members in one run.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service import convert
from service.projection import apply_batch, apply_frames, dump_tables, open_database
from service.projection.json_batch import rows_json
from service.records import AttributionKind, JoinRecorded
from wal import LogEntry

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
HOSTILE = ["", "a\x00b", 'q"uo\\te', "line\nbreak\r\t", "\u202eevil\u202c", "😀👍🏽", "=1+2", "é" * 300]
IDS = [
    "1300000000000000003",
    "007",
    "-0",
    "+7",
    " 7",
    "g1",
    "9223372036854775807",
    "9223372036854775808",
    "0",
]


def frames(records: list[JoinRecorded]) -> list[LogEntry]:
    return [
        LogEntry(lsn, *convert.encode(record), segment="00000000000000000001.wal", offset=0)
        for lsn, record in enumerate(records, start=1)
    ]


def both_ways(tmp_path: Path, records: list[JoinRecorded]) -> tuple[list[object], list[object]]:
    by_rows, by_json = open_database(tmp_path / "rows.db"), open_database(tmp_path / "json.db")
    try:
        apply_batch(by_rows, list(enumerate(records, start=1)))
        apply_frames(by_json, frames(records))
        return list(dump_tables(by_rows)), list(dump_tables(by_json))
    finally:
        by_rows.close()
        by_json.close()


def join(user: str, name: str = "n", staff: str | None = "s", uses: int | None = 1) -> JoinRecorded:
    return JoinRecorded(
        T0, "g", "Guild ✨", user, name, name, AttributionKind.EXACT, "code", staff, "staff", uses, uses
    )


def test_hostile_text_and_odd_ids_write_the_same_rows(tmp_path: Path):
    records = [
        join(user, name, staff)
        for user, name, staff in zip(IDS * 2, HOSTILE * 3, IDS[::-1] * 2, strict=False)
    ]
    records += [join("u-again"), join("u-again", "second time"), join(IDS[0]), join(IDS[0])]
    expected, got = both_ways(tmp_path, records)
    assert got == expected
    member_rows = [row for table, row in got if table == "members"]
    assert len(member_rows) == len(set(IDS)) + 1  # repeats in one run counted in order, not duplicated


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    users=st.lists(st.sampled_from(IDS) | st.text(max_size=8), min_size=1, max_size=12),
    names=st.lists(st.text(max_size=20), min_size=12, max_size=12),
    uses=st.lists(st.none() | st.integers(-(2**63), 2**63 - 1), min_size=12, max_size=12),
)
def test_any_run_of_joins_writes_the_same_rows(tmp_path: Path, users, names, uses):
    records = [join(user, names[k], users[-1 - k], uses[k]) for k, user in enumerate(users)]
    for stale in tmp_path.glob("*.db*"):
        stale.unlink()
    expected, got = both_ways(tmp_path, records)
    assert got == expected


def test_what_json_cannot_carry_goes_row_by_row():
    row = (1, 0, None, None, "[]", "[]", "g", "G", "u", "n", "n", "exact", "c", "s", "S", 1, 1)
    assert rows_json([row]) is not None
    assert rows_json([(*row[:15], 2**63, 1)]) is None  # SQLite would read it as REAL
    assert rows_json([(*row[:15], 1, -(2**63) - 1)]) is None
    assert rows_json([(*row[:9], "lone \ud800 surrogate", *row[10:])]) is None


def test_a_use_count_beyond_64_bits_fails_as_before(tmp_path: Path):
    record = join("u1", uses=2**64)
    conn = open_database(tmp_path / "big.db")
    try:
        with pytest.raises(OverflowError):
            apply_frames(conn, frames([record]))
        assert [row for table, row in dump_tables(conn) if table == "joins"] == []
    finally:
        conn.close()
