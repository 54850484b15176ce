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
- RFC 4180 as the `csv` module's "excel" dialect writes it: a cell is quoted when it holds a quote, comma,
  CR or LF (QUOTE_MINIMAL), quotes are doubled, rows end in CRLF; newlines in a name survive in quotes.

`settled_lsn` is the LSN of the settlement by hand (`/settle_join`) behind the row's invite and staff
member, empty when the bot's own verdict stands. Times are ISO-8601 UTC strings with offset, as in the log;
candidates and flags are JSON arrays in both formats (a CSV cell holds the array's JSON text). Erased
users' rows are exported as the projection holds them: empty user id and account age, names `[erased]`.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import apsw

from service.projection.apply import applied_lsn
from service.projection.ids import id_param, id_text_sql
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
    "settled_lsn",
)

#: Export column -> the SQL for its raw value (ids as the text written, see `ids`).
_VALUE_SQL: dict[str, str] = {
    "timestamp": iso_sql("timestamp_us"),
    "user_id": id_text_sql("user_id"),
    "username": "username",
    "display_name": "display_name",
    "invite_code": "invite_code",
    "staff_id": id_text_sql("staff_id"),
    "staff_username": "staff_username",
    "uses_before": "uses_before",
    "uses_after": "uses_after",
    "guild_id": id_text_sql("guild_id"),
    "guild_name": "guild_name",
    "attribution_kind": "kind",
    "candidates": "candidates",
    "flags": "flags",
    "account_created_at": f"(CASE WHEN account_created_us NOT NULL THEN {iso_sql('account_created_us')} END)",
    "lsn": "lsn",
    "settled_lsn": "settled_lsn",
}
_INTEGER_COLUMNS = frozenset({"uses_before", "uses_after", "lsn", "settled_lsn"})
_ID_COLUMNS = frozenset({"user_id", "staff_id", "guild_id"})  # named as the joins columns
_JSON_COLUMNS = frozenset({"candidates", "flags"})  # stored as JSON text; JSONL embeds them as arrays

#: First characters that make a spreadsheet evaluate a cell; `'` itself so that unescaping is exact.
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "'")

_TRIGGER_CODES = ", ".join(str(ord(c)) for c in FORMULA_TRIGGERS)
# Cells printed as they are: numbers, times we format (digits, '-', ':', '.', '+'), the kind (an enum
# value), and candidates and flags (JSON arrays: they start with "[").
_UNGUARDED_COLUMNS = frozenset(
    {*_INTEGER_COLUMNS, "timestamp", "account_created_at", "attribution_kind", "candidates", "flags"}
)


def _csv_cell_sql(column: str) -> str:
    """SQL for a cell's text: the formula guard in front when it starts with a trigger, NULL as ''.

    `x < 'A'` (a byte comparison) spares most names the unicode() call: every trigger sorts below 'A'.
    SQL's '''' is the string "'".
    """
    value = _VALUE_SQL[column]
    if column in _UNGUARDED_COLUMNS:
        return f"coalesce({value}, '')"
    if column in _ID_COLUMNS:
        # An id stored as an integer (see `ids`) reads as digits, after a '-' (a trigger) when negative:
        # its cell needs no text casts; any other id is text, guarded as such.
        return (
            f"(CASE WHEN typeof({column}) = 'integer' THEN "
            f"(CASE WHEN {column} < 0 THEN '''' || {column} ELSE CAST({column} AS TEXT) END) "
            f"ELSE {_guarded_text_sql(column)} END)"
        )
    return _guarded_text_sql(value)


def _guarded_text_sql(value: str) -> str:
    trigger = f"{value} < 'A' AND unicode({value}) IN ({_TRIGGER_CODES})"
    return f"coalesce(CASE WHEN {trigger} THEN '''' || {value} ELSE {value} END, '')"


# SQLite builds each row into two strings, so a page crosses into Python as two objects per row:
# - the cells from the user's and staff member's names (and the ids and time among them), joined by the
#   ASCII unit separator: Python checks the string for a quote, comma, CR or LF (rare in names), and if
#   there is none swaps the separators for commas; otherwise the csv module writes those cells;
# - the ledger's own cells after them (kind, candidates, flags, account age, lsn), finished in SQL: the
#   JSON arrays always hold quotes and commas, so they are quoted unless empty.
# The csv module on every row would take 2-3 s per million rows, half the export's budget.
_SEPARATOR = "\x1f"
_CHECKED_COLUMNS = COLUMNS[: COLUMNS.index("attribution_kind")]
_FINISHED_COLUMNS = COLUMNS[len(_CHECKED_COLUMNS) :]
_SEPARATORS_PER_LINE = len(_CHECKED_COLUMNS) - 1


def _finished_cell_sql(column: str) -> str:
    if column in _JSON_COLUMNS:
        value = _VALUE_SQL[column]
        return f"""(CASE WHEN {value} = '[]' THEN '[]' ELSE '"' || replace({value}, '"', '""') || '"' END)"""
    return _csv_cell_sql(column)


_CSV_SELECT = (
    " || char(31) || ".join(_csv_cell_sql(column) for column in _CHECKED_COLUMNS)
    + ", "
    + " || ',' || ".join(_finished_cell_sql(column) for column in _FINISHED_COLUMNS)
)
_CSV_CHECKED_CELLS_SELECT = ", ".join(_csv_cell_sql(column) for column in _CHECKED_COLUMNS)
_JSONL_SELECT = (
    "json_object("
    + ", ".join(
        f"'{c}', " + (f"json({_VALUE_SQL[c]})" if c in _JSON_COLUMNS else _VALUE_SQL[c]) for c in COLUMNS
    )
    + ")"
)


def escape_csv_cell(text: str) -> str:
    """The guarded form of a text cell (what the export SQL computes), for code writing rows itself."""
    return "'" + text if text[:1] in FORMULA_TRIGGERS else text


def unescape_csv_cell(text: str) -> str:
    """The original text of an exported text cell: drop the one protective `'` if present."""
    return text[1:] if text[:1] == "'" else text


class ExportTally:
    """Rows written so far by an export; pass one in to know how many rows a streamed export held."""

    __slots__ = ("rows",)

    def __init__(self) -> None:
        self.rows = 0


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
        filters.append(id_param(guild_id))
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
    tally: ExportTally | None = None,
) -> Iterator[bytes]:
    """The joins (all, or one guild's, `since` inclusive, `until` exclusive) as CSV chunks with a header."""
    header = (",".join(COLUMNS) + "\r\n").encode("utf-8")
    yield (b"\xef\xbb\xbf" + header) if bom else header
    buffer = io.StringIO()
    # The dialect's own CRLF line end: QUOTE_MINIMAL quotes a cell holding any of its characters.
    writer = csv.writer(buffer, dialect="excel")

    def quoted(cells: list[Any]) -> str:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow(cells)
        return buffer.getvalue()[:-2]

    for page in _pages(conn, _CSV_SELECT, guild_id, since, until, page_size):
        lines = []
        for lsn, checked, finished in page:
            if (
                '"' in checked
                or "," in checked
                or "\n" in checked
                or "\r" in checked
                or checked.count(_SEPARATOR) != _SEPARATORS_PER_LINE
            ):
                cells: list[Any] = checked.split(_SEPARATOR)
                if len(cells) != len(_CHECKED_COLUMNS):  # a name holds the separator: ask for the cells
                    with conn:
                        row = conn.execute(
                            f"SELECT {_CSV_CHECKED_CELLS_SELECT} FROM joins WHERE lsn = ?", (lsn,)
                        ).fetchone()
                    cells = list(row or ())
                lines.append(quoted(cells) + "," + finished)
            else:
                lines.append(checked.replace(_SEPARATOR, ",") + "," + finished)
        lines.append("")  # the last row's CRLF
        if tally is not None:
            tally.rows += len(page)
        yield "\r\n".join(lines).encode("utf-8")


def export_jsonl(
    conn: apsw.Connection,
    *,
    guild_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    page_size: int = 2_000,
    tally: ExportTally | None = None,
) -> Iterator[bytes]:
    """The joins as JSON Lines chunks: one object per join, keys in `COLUMNS` order, no header."""
    for page in _pages(conn, _JSONL_SELECT, guild_id, since, until, page_size):
        if tally is not None:
            tally.rows += len(page)
        yield ("\n".join(row[1] for row in page) + "\n").encode("utf-8")
