"""Discord ids in the projection's big tables: stored as INTEGER when the id is one, read back as text.

A Discord id (a snowflake) is the decimal text of a 64-bit integer. Stored as TEXT it takes 19 bytes in
the row and in every index entry that holds it; as an INTEGER, 8. In `joins`, `leaves` and `members`
(schema version 2) that makes the file a quarter smaller and the rebuild's index builds and members
derivation a fifth faster. The small tables (staff profiles, snapshots, erasures, join counts) keep text.

The ledger never changes data, and records may hold ids that are not snowflakes (tests use "g1"), so the
rule is exact both ways:

- an id is stored as the INTEGER n only when its text is exactly `CAST(n AS TEXT)`: the canonical decimal
  of a 64-bit integer (no sign but a leading '-', no leading zero, no space, no underscore); any other
  text is stored as that text. Reading `CAST(column AS TEXT)` gives back the exact text written;
- the columns are declared without a type (BLOB affinity): SQLite's INTEGER or NUMERIC affinity would
  turn other texts into numbers on its own ('007', ' 7', '+7', '3.0e+5' and 20-digit numbers, which
  become REAL), and TEXT affinity would turn the integers back into text. Without affinity a value is
  stored as bound, and compared by type, so a lookup must bind the stored form (`id_param`);
- a user id is converted in SQL when it is written (`stored_id_sql`, in C: a rebuild writes a million,
  each different); the guild and staff ids, a few that repeat in every join, once each in Python
  (`STORED_IDS`, `id_param` remembered), and a lookup's parameters by `id_param`. The tests check that
  the SQL and the Python agree on every text.
"""

from __future__ import annotations

import apsw

#: The id columns stored by `stored_id_sql`, per table (schema version 2).
ID_COLUMNS: dict[str, tuple[str, ...]] = {
    "joins": ("guild_id", "user_id", "staff_id"),
    "leaves": ("guild_id", "user_id"),
    "members": ("guild_id", "user_id"),
}

_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1


def stored_id_sql(value: str) -> str:
    """SQL for the stored form of the id text `value` (a parameter like `?3`, or a text column): the
    INTEGER whose text it is exactly, else the text itself; NULL stays NULL.

    `CAST(text AS INTEGER)` reads the longest integer prefix (saturating at the 64-bit bounds), so the
    round trip through text is equal only for a canonical 64-bit decimal."""
    return (
        f"(CASE WHEN CAST(CAST({value} AS INTEGER) AS TEXT) = {value} "
        f"THEN CAST({value} AS INTEGER) ELSE {value} END)"
    )


def id_param(value: str) -> int | str:
    """The stored form of the id `value`, to bind in a lookup of an id column (what `stored_id_sql`
    stores for the same text)."""
    try:
        number = int(value)
    except ValueError:  # not a number at all (or too long for int())
        return value
    if _INT64_MIN <= number <= _INT64_MAX and str(number) == value:
        return number
    return value


class _StoredIds(dict[str | None, int | str | None]):
    """`id_param` of each id looked up, remembered (up to a bound: a bot serves a few thousand guilds);
    None stays None. A hit is one dict lookup in C."""

    LIMIT = 65_536

    def __missing__(self, key: str | None) -> int | str | None:
        value = None if key is None else id_param(key)
        if len(self) < self.LIMIT:
            self[key] = value
        return value


#: The stored form of a guild or staff id: `STORED_IDS[text]`.
STORED_IDS = _StoredIds()


def id_text_sql(column: str) -> str:
    """SQL reading an id column as the text that was written (NULL stays NULL)."""
    return f"CAST({column} AS TEXT)"


def text_columns(conn: apsw.Connection, table: str) -> list[tuple[str, str]]:
    """(name, SQL reading it) for each column of `table` in SELECT * order: the untyped columns (the ids
    stored by `stored_id_sql`) read as text, so a dump or a comparison shows what the log holds."""
    info = conn.execute(f'PRAGMA table_info("{table}")').fetchall()  # cid, name, type, notnull, dflt, pk
    return [(str(name), id_text_sql(f'"{name}"') if not kind else f'"{name}"') for _, name, kind, *_ in info]
