"""A run of joins rows written by two statements, whatever its length: the rows travel as one JSON text.

apsw gives the GIL away around every call into SQLite, each parameter bind included: a joins row is 17
binds and a step, its members upsert 3 more. The live applier runs in a worker thread beside a busy event
loop, so each of those ~22 calls per join handed the GIL to the loop and waited to get it back; under the
pipeline benchmark's load the applier spent ~85 % of its time waiting (36 µs of CPU, 219 µs of wall time
per record) and fell a minute behind the log. Here the run's rows are encoded to one JSON array (msgspec,
in C) and bound once; SQLite unpacks it with `json_each` inside a single step, without the GIL. The same
text then feeds the members upsert.

The result is the rows `executemany` would write, value for value: JSON numbers come back as the same
INTEGERs, strings as the same text (NUL, quotes, any Unicode), null as NULL, in array order (so an upsert
sees the rows before it, as when they come one by one). What JSON cannot carry the same way goes the old
way and meets the old outcome there: a string that is not valid Unicode (a lone surrogate: msgspec refuses
it, apsw too) and an integer beyond 64 bits (SQLite would read it as REAL; apsw raises).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import apsw

from service.projection.apply import _INSERT_JOIN_COLUMNS, encode_json
from service.projection.ids import stored_id_sql

_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
#: Where the row (`apply._INSERT_JOIN_COLUMNS` order) holds integers that came from a payload unbounded.
_USES = (_INSERT_JOIN_COLUMNS.index("uses_before"), _INSERT_JOIN_COLUMNS.index("uses_after"))
_GUILD, _USER, _LSN = (_INSERT_JOIN_COLUMNS.index(c) for c in ("guild_id", "user_id", "lsn"))


def _field(column: str, n: int) -> str:
    # The row binds guild and staff ids in their stored form already; the user id is converted here.
    return stored_id_sql(f"(value->>{n})") if column == "user_id" else f"value->>{n}"


INSERT_JOINS = (
    f"INSERT INTO joins ({', '.join(_INSERT_JOIN_COLUMNS)}) SELECT "
    + ", ".join(_field(column, n) for n, column in enumerate(_INSERT_JOIN_COLUMNS))
    + " FROM json_each(?1)"
)
# `WHERE true`: SQLite's grammar needs it between a SELECT and ON CONFLICT. Same upsert as
# `apply._UPSERT_MEMBER_JOINED`, one member per row, in row order (`key`: the index in the array).
UPSERT_MEMBERS_JOINED = f"""INSERT INTO members (guild_id, user_id, in_guild, join_count, first_join_lsn,
    last_join_lsn) SELECT {stored_id_sql(f"(value->>{_GUILD})")}, {stored_id_sql(f"(value->>{_USER})")}, 1, 1,
        value->>{_LSN}, value->>{_LSN} FROM json_each(?1) WHERE true ORDER BY key
    ON CONFLICT (guild_id, user_id) DO UPDATE SET in_guild = 1, join_count = join_count + 1,
        first_join_lsn = coalesce(first_join_lsn, excluded.first_join_lsn),
        last_join_lsn = excluded.last_join_lsn"""


def rows_json(rows: Sequence[Sequence[Any]]) -> str | None:
    """The joins rows as one JSON array, or None when a row holds what JSON would not carry unchanged."""
    before, after = _USES
    uses = [u for row in rows for u in (row[before], row[after]) if u is not None]
    if uses and (min(uses) < _INT64_MIN or max(uses) > _INT64_MAX):
        return None
    try:
        return encode_json(rows).decode()
    except (UnicodeEncodeError, TypeError, OverflowError):
        return None


def insert_joins(conn: apsw.Connection, text: str, *, members: bool) -> None:
    """Insert the joins rows of `rows_json`'s `text`, then (with `members`) upsert their members."""
    conn.execute(INSERT_JOINS, (text,))
    if members:
        conn.execute(UPSERT_MEMBERS_JOINED, (text,))
