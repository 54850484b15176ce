"""Streaming exports of the join log: CSV a person can open in Excel, and JSON Lines.

Both are generators of UTF-8 `bytes` chunks (one per page of rows), so `/export_invite_logs`, the CLI and
an HTTP response can write them as they come, in constant memory whatever the size of the log. Rows are
read in keyset pages by LSN, each page in its own short read transaction (no read snapshot is held while
the consumer is slow), and the export stops at the `applied_lsn` it saw when it started: a join applied
during the export is not half-included. Rows appear in log (LSN) order, the order joins were recorded.

Columns: the brief's fields in the brief's order, then the ledger's own.

CSV decisions:

- Excel treats a cell starting with `=`, `+`, `-`, `@`, tab or carriage return as a formula (CSV
  injection), so such a text cell gets one `'` in front. A cell that already starts with `'` gets one too,
  so reading back is exact: strip one leading `'` from a text cell if present (`unescape_csv_cell`).
  Integer columns (uses, lsn) are never prefixed: a negative number is a number, not a formula.
- UTF-8 with a byte-order mark by default: without the BOM Excel reads UTF-8 as the local code page and
  mangles every non-ASCII name. Python reads it with `encoding="utf-8-sig"`.
- `csv` module dialect "excel": fields quoted when needed (QUOTE_MINIMAL), quotes doubled, CRLF row
  ends; newlines inside a name survive inside quotes.

Times are ISO-8601 UTC strings with offset, as in the log. Erased users' rows are exported as the
projection holds them: empty user id and account age, names `[erased]`.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import apsw

from service.projection.apply import applied_lsn
from service.projection.schema import iso_sql, to_us

#: Export columns, in order.
COLUMNS = (
    "timestamp",
    "user_id",
    "username",
    "display_name",
    "invite_code",
    "staff_id",
    "staff_username",
    "uses_before",
    "uses_after",
    "guild_id",
    "guild_name",
    "attribution_kind",
    "candidates",
    "flags",
    "account_created_at",
    "lsn",
)

#: Export column -> the SQL for its raw value.
_VALUE_SQL: dict[str, str] = {
    "timestamp": iso_sql("timestamp_us"),
    "user_id": "user_id",
    "username": "username",
    "display_name": "display_name",
    "invite_code": "invite_code",
    "staff_id": "staff_id",
    "staff_username": "staff_username",
    "uses_before": "uses_before",
    "uses_after": "uses_after",
    "guild_id": "guild_id",
    "guild_name": "guild_name",
    "attribution_kind": "kind",
    "candidates": "candidates",
    "flags": "flags",
    "account_created_at": f"(CASE WHEN account_created_us NOT NULL THEN {iso_sql('account_created_us')} END)",
    "lsn": "lsn",
}
_INTEGER_COLUMNS = frozenset({"uses_before", "uses_after", "lsn"})
_JSON_COLUMNS = frozenset({"candidates", "flags"})  # stored as JSON text; JSONL embeds them as arrays

#: First characters that make a spreadsheet evaluate a cell; `'` itself so that unescaping is exact.
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "'")

_TRIGGERS_SQL = ", ".join(
    "char(9)" if c == "\t" else "char(13)" if c == "\r" else "'" + c.replace("'", "''") + "'"
    for c in FORMULA_TRIGGERS
)


def _csv_safe_sql(value_sql: str) -> str:
    prefixed = "'''' || " + value_sql  # SQL's '' is one quote: this is "'" || value
    return f"(CASE WHEN substr({value_sql}, 1, 1) IN ({_TRIGGERS_SQL}) THEN {prefixed} ELSE {value_sql} END)"


# Prefixing in SQL keeps the per-row work in C: a million rows leave Python only for csv.writer.
_CSV_SELECT = ", ".join(
    _VALUE_SQL[c]
    if c in _INTEGER_COLUMNS or c in ("timestamp", "account_created_at")
    else _csv_safe_sql(_VALUE_SQL[c])
    for c in COLUMNS
)
_JSONL_SELECT = (
    "json_object("
    + ", ".join(
        f"'{c}', " + (f"json({_VALUE_SQL[c]})" if c in _JSON_COLUMNS else _VALUE_SQL[c]) for c in COLUMNS
    )
    + ")"
)


def escape_csv_cell(text: str) -> str:
    """The CSV form of a text cell (what the SQL above computes), for callers writing rows themselves."""
    return "'" + text if text[:1] in FORMULA_TRIGGERS else text


def unescape_csv_cell(text: str) -> str:
    """The original text of an exported text cell: drop the one protective `'` if present."""
    return text[1:] if text[:1] == "'" else text


def _pages(
    conn: apsw.Connection,
    select_sql: str,
    guild_id: str | None,
    since: datetime | None,
    until: datetime | None,
    page_size: int,
) -> Iterator[list[tuple[Any, ...]]]:
    if page_size < 1:
        raise ValueError("page_size must be at least 1")
    with conn:
        last_lsn = applied_lsn(conn)
    where = ["lsn > ?", "lsn <= ?"]
    filters: list[Any] = []
    if guild_id is not None:
        where.append("guild_id = ?")
        filters.append(guild_id)
    if since is not None:
        where.append("timestamp_us >= ?")
        filters.append(to_us(since))
    if until is not None:
        where.append("timestamp_us < ?")
        filters.append(to_us(until))
    sql = f"SELECT lsn, {select_sql} FROM joins WHERE {' AND '.join(where)} ORDER BY lsn LIMIT ?"
    after = 0
    while True:
        with conn:
            page: list[tuple[Any, ...]] = conn.execute(sql, (after, last_lsn, *filters, page_size)).fetchall()
        if not page:
            return
        after = page[-1][0]
        yield page
        if len(page) < page_size:
            return


def export_csv(
    conn: apsw.Connection,
    *,
    guild_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    bom: bool = True,
    page_size: int = 2_000,
) -> Iterator[bytes]:
    """The joins (all, or one guild's, `since` inclusive, `until` exclusive) as CSV chunks with a header."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, dialect="excel")
    writer.writerow(COLUMNS)
    header = buffer.getvalue().encode("utf-8")
    yield (b"\xef\xbb\xbf" + header) if bom else header
    for page in _pages(conn, _CSV_SELECT, guild_id, since, until, page_size):
        buffer.seek(0)
        buffer.truncate()
        writer.writerows(row[1:] for row in page)
        yield buffer.getvalue().encode("utf-8")


def export_jsonl(
    conn: apsw.Connection,
    *,
    guild_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    page_size: int = 2_000,
) -> Iterator[bytes]:
    """The joins as JSON Lines chunks: one object per join, keys in `COLUMNS` order, no header."""
    for page in _pages(conn, _JSONL_SELECT, guild_id, since, until, page_size):
        yield ("\n".join(row[1] for row in page) + "\n").encode("utf-8")
