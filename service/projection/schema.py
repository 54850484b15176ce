"""The projection's SQLite schema, its migrations, and opening a database file.

The database is a projection of the log (DESIGN.md, "the one rule"): it can be deleted and rebuilt from the
log at any moment. That decides two things here:

- durability is relaxed (WAL journal mode, synchronous=NORMAL): a power cut may lose the last applied
  transactions, but `applied_lsn` is written in the same transaction as the rows, so the database always
  stays consistent with *some* prefix of the log and the applier simply resumes from there;
- a database this code cannot read (newer schema version, another application's file, garbage) is not
  "fixed" in place: `open_database` raises a typed `ProjectionSchemaError` and recovery rebuilds it.

Times are stored as integer microseconds since the Unix epoch (UTC), in columns named `*_us`: converting a
datetime to an integer costs a quarter of formatting it (this matters at a rebuild's million records), they
sort and range-compare as numbers, and `to_us`/`from_us` round-trip every aware datetime exactly. Exports
format them back to the log's ISO-8601 form in SQL (`iso_sql`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import apsw
import attrs

from service.projection.ids import ID_COLUMNS, stored_id_sql

#: PRAGMA application_id of every projection database ("ILED"): tells our file from another SQLite file.
APPLICATION_ID = 0x494C4544

#: What erased personal text becomes in the projection and in exports.
ERASED = "[erased]"

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_US = timedelta(microseconds=1)


def to_us(value: datetime) -> int:
    """Microseconds since the Unix epoch; a naive datetime raises TypeError (its zone would be a guess)."""
    return (value - EPOCH) // ONE_US


def from_us(value: int) -> datetime:
    return EPOCH + timedelta(microseconds=value)


def iso_sql(column: str) -> str:
    """SQL giving `from_us(column).isoformat()` (NULL stays NULL), so exports format times in C.

    The floor modulo keeps times before 1970 right (SQLite's % takes the sign of the dividend), and the
    fraction is left out when it is zero, as Python's isoformat does.
    """
    frac = f"((({column}) % 1000000 + 1000000) % 1000000)"
    return (
        f"(strftime('%Y-%m-%dT%H:%M:%S', (({column}) - {frac}) / 1000000, 'unixepoch')"
        f" || CASE {frac} WHEN 0 THEN '' ELSE printf('.%06d', {frac}) END || '+00:00')"
    )


class ProjectionSchemaError(Exception):
    """The file is not a projection database this code can use as it is; recovery should rebuild it."""


class SchemaTooNewError(ProjectionSchemaError):
    def __init__(self, found: int, supported: int) -> None:
        super().__init__(
            f"projection schema version {found} is newer than this code supports ({supported}); "
            "rebuild the database from the log or run the newer version"
        )
        self.found = found
        self.supported = supported


class NotAProjectionError(ProjectionSchemaError):
    """Another application's SQLite file, a file with unknown tables, or not an SQLite file at all."""


@attrs.frozen
class Migration:
    """One step from user_version `version - 1` to `version`; statements run in one transaction."""

    version: int
    why: str
    statements: tuple[str, ...]


_V1 = Migration(
    version=1,
    why="initial projection: joins, leaves, members, staff IB profiles, invite snapshots, erasures",
    statements=(
        # applied_lsn lives here; written in the same transaction as every batch (WAL rule 7).
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID",
        "INSERT INTO meta (key, value) VALUES ('applied_lsn', 0)",
        # One row per JoinRecorded; the lsn is the rowid, so a join is found by the record that proves it.
        # user_id is NULL and the names are ERASED once the user's data was erased (erased_lsn says by
        # which record); what counts need (time, guild, kind, code, staff, uses, flags) stays.
        """CREATE TABLE joins (
            lsn INTEGER PRIMARY KEY,
            timestamp_us INTEGER NOT NULL,
            guild_id TEXT NOT NULL,
            guild_name TEXT NOT NULL,
            user_id TEXT,
            username TEXT NOT NULL,
            display_name TEXT NOT NULL,
            kind TEXT NOT NULL,
            invite_code TEXT,
            staff_id TEXT,
            staff_username TEXT,
            uses_before INTEGER,
            uses_after INTEGER,
            candidates TEXT NOT NULL,
            flags TEXT NOT NULL,
            account_created_us INTEGER,
            decided_us INTEGER,
            erased_lsn INTEGER
        )""",
        # Every index ends in the rowid (the lsn), which gives the (time, lsn) order of keyset pagination.
        # Time in the user index too: without it SQLite's planner prefers walking joins_by_time for the
        # ORDER BY and filtering the whole guild by user.
        "CREATE INDEX joins_by_user ON joins (guild_id, user_id, timestamp_us)",
        "CREATE INDEX joins_by_time ON joins (guild_id, timestamp_us)",
        # Partial: unattributed joins need no entry.
        "CREATE INDEX joins_by_code ON joins (guild_id, invite_code, timestamp_us) "
        "WHERE invite_code IS NOT NULL",
        "CREATE INDEX joins_by_staff ON joins (guild_id, staff_id, timestamp_us) WHERE staff_id IS NOT NULL",
        "CREATE TABLE leaves (lsn INTEGER PRIMARY KEY, timestamp_us INTEGER NOT NULL, "
        "guild_id TEXT NOT NULL, user_id TEXT NOT NULL)",
        "CREATE INDEX leaves_by_user ON leaves (guild_id, user_id)",
        # Current state per member; names are not copied here (the latest join row has them), so an
        # erasure has one place less to forget.
        """CREATE TABLE members (
            guild_id TEXT NOT NULL,
            user_id TEXT NOT NULL,
            in_guild INTEGER NOT NULL,
            join_count INTEGER NOT NULL,
            first_join_lsn INTEGER,
            last_join_lsn INTEGER,
            last_left_us INTEGER,
            last_left_lsn INTEGER,
            PRIMARY KEY (guild_id, user_id)
        ) WITHOUT ROWID""",
        """CREATE TABLE staff_ib (
            guild_id TEXT NOT NULL,
            staff_id TEXT NOT NULL,
            staff_username TEXT NOT NULL,
            ib_link TEXT NOT NULL,
            ib_code TEXT NOT NULL,
            set_by TEXT NOT NULL,
            updated_us INTEGER NOT NULL,
            lsn INTEGER NOT NULL,
            PRIMARY KEY (guild_id, staff_id)
        ) WITHOUT ROWID""",
        # The latest snapshot per guild; its invites replace the previous snapshot's.
        """CREATE TABLE invite_snapshots (
            guild_id TEXT PRIMARY KEY,
            guild_name TEXT NOT NULL,
            taken_us INTEGER NOT NULL,
            lsn INTEGER NOT NULL,
            vanity_code TEXT,
            vanity_uses INTEGER
        ) WITHOUT ROWID""",
        """CREATE TABLE snapshot_invites (
            guild_id TEXT NOT NULL,
            code TEXT NOT NULL,
            uses INTEGER NOT NULL,
            max_uses INTEGER NOT NULL,
            inviter_id TEXT,
            inviter_name TEXT,
            expires_us INTEGER,
            channel_id TEXT,
            created_us INTEGER,
            PRIMARY KEY (guild_id, code)
        ) WITHOUT ROWID""",
        # The tombstone: who was erased, when, at whose request. Keeping the user id here is what lets
        # `lookup_user` say "erased" instead of "never joined"; the log holds the same record anyway.
        """CREATE TABLE erasures (
            lsn INTEGER PRIMARY KEY,
            timestamp_us INTEGER NOT NULL,
            guild_id TEXT NOT NULL,
            user_id TEXT NOT NULL,
            requested_by TEXT NOT NULL,
            joins_redacted INTEGER NOT NULL
        )""",
        "CREATE INDEX erasures_by_user ON erasures (guild_id, user_id)",
        # Joins per guild and attribution kind, kept by the applier so status/metrics need no table scan.
        """CREATE TABLE join_counts (
            guild_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            joins INTEGER NOT NULL,
            PRIMARY KEY (guild_id, kind)
        ) WITHOUT ROWID""",
    ),
)


def _retyped(table: str, create: str, columns: str, indexes: tuple[str, ...]) -> tuple[str, ...]:
    """Statements replacing `table` by the table `create` makes (named `<table>_v2`, the same columns in
    the same order, its ids untyped), its rows copied with their ids in the stored form of `ids`."""
    copied = ", ".join(stored_id_sql(c) if c in ID_COLUMNS[table] else c for c in columns.split(", "))
    return (
        create,
        f"INSERT INTO {table}_v2 ({columns}) SELECT {copied} FROM {table}",
        f"DROP TABLE {table}",  # and its indexes
        f"ALTER TABLE {table}_v2 RENAME TO {table}",
        *indexes,
    )


_V2 = Migration(
    version=2,
    why="Discord ids in joins, leaves and members stored as integers when they are one (projection.ids)",
    statements=(
        # The id columns have no declared type on purpose: BLOB affinity stores a value as bound (see ids).
        *_retyped(
            "joins",
            """CREATE TABLE joins_v2 (
            lsn INTEGER PRIMARY KEY,
            timestamp_us INTEGER NOT NULL,
            guild_id NOT NULL,
            guild_name TEXT NOT NULL,
            user_id,
            username TEXT NOT NULL,
            display_name TEXT NOT NULL,
            kind TEXT NOT NULL,
            invite_code TEXT,
            staff_id,
            staff_username TEXT,
            uses_before INTEGER,
            uses_after INTEGER,
            candidates TEXT NOT NULL,
            flags TEXT NOT NULL,
            account_created_us INTEGER,
            decided_us INTEGER,
            erased_lsn INTEGER
        )""",
            "lsn, timestamp_us, guild_id, guild_name, user_id, username, display_name, kind, invite_code, "
            "staff_id, staff_username, uses_before, uses_after, candidates, flags, account_created_us, "
            "decided_us, erased_lsn",
            # The same indexes as version 1.
            (
                "CREATE INDEX joins_by_user ON joins (guild_id, user_id, timestamp_us)",
                "CREATE INDEX joins_by_time ON joins (guild_id, timestamp_us)",
                "CREATE INDEX joins_by_code ON joins (guild_id, invite_code, timestamp_us) "
                "WHERE invite_code IS NOT NULL",
                "CREATE INDEX joins_by_staff ON joins (guild_id, staff_id, timestamp_us) "
                "WHERE staff_id IS NOT NULL",
            ),
        ),
        *_retyped(
            "leaves",
            "CREATE TABLE leaves_v2 (lsn INTEGER PRIMARY KEY, timestamp_us INTEGER NOT NULL, "
            "guild_id NOT NULL, user_id NOT NULL)",
            "lsn, timestamp_us, guild_id, user_id",
            ("CREATE INDEX leaves_by_user ON leaves (guild_id, user_id)",),
        ),
        *_retyped(
            "members",
            """CREATE TABLE members_v2 (
            guild_id NOT NULL,
            user_id NOT NULL,
            in_guild INTEGER NOT NULL,
            join_count INTEGER NOT NULL,
            first_join_lsn INTEGER,
            last_join_lsn INTEGER,
            last_left_us INTEGER,
            last_left_lsn INTEGER,
            PRIMARY KEY (guild_id, user_id)
        ) WITHOUT ROWID""",
            "guild_id, user_id, in_guild, join_count, first_join_lsn, last_join_lsn, last_left_us, "
            "last_left_lsn",
            (),
        ),
    ),
)

_V3 = Migration(
    version=3,
    why="joins settled by hand (JoinSettled): the settlements and the join rows they credit",
    statements=(
        # The LSN of the settlement now in force; the row's invite_code, staff_id and staff_username are
        # the settlement's then, while kind stays the bot's verdict. NULL for nearly every row, so an old
        # database gains the column without a rewrite.
        "ALTER TABLE joins ADD COLUMN settled_lsn INTEGER",
        # Every settlement, corrections included: who settled which join, when, why (the audit trail).
        # Ids as text, as erasures keep them: few rows, read by join_lsn.
        """CREATE TABLE settlements (
            lsn INTEGER PRIMARY KEY,
            join_lsn INTEGER NOT NULL,
            timestamp_us INTEGER NOT NULL,
            guild_id TEXT NOT NULL,
            user_id TEXT,
            invite_code TEXT NOT NULL,
            staff_id TEXT,
            staff_username TEXT,
            settled_by TEXT NOT NULL,
            settled_by_name TEXT NOT NULL,
            reason TEXT NOT NULL,
            join_settled INTEGER NOT NULL
        )""",
        "CREATE INDEX settlements_by_join ON settlements (join_lsn)",
    ),
)

#: Every migration in order; `MIGRATIONS[i].version == i + 1`. Append only, never edit a released one.
MIGRATIONS: tuple[Migration, ...] = (_V1, _V2, _V3)
SCHEMA_VERSION = len(MIGRATIONS)


def _configure(conn: apsw.Connection) -> None:
    conn.set_busy_timeout(5_000)
    conn.pragma("foreign_keys", False)
    conn.pragma("cache_size", -32_000)  # 32 MB: the hot index pages of a few million joins


def _check_identity(conn: apsw.Connection, path: str, supported: int = SCHEMA_VERSION) -> int:
    """The file's user_version after checking it is ours (or empty) and not newer than `supported`;
    raises ProjectionSchemaError."""
    try:
        app_id = int(conn.pragma("application_id"))
        version = int(conn.pragma("user_version"))
        table_count = int(conn.execute("SELECT count(*) FROM sqlite_schema").get)
    except (apsw.NotADBError, apsw.CorruptError) as exc:
        raise NotAProjectionError(f"{path} is not a readable SQLite database: {exc}") from exc
    if app_id not in (0, APPLICATION_ID):
        raise NotAProjectionError(f"{path} belongs to another application (application_id {app_id:#x})")
    if version == 0 and table_count > 0:
        raise NotAProjectionError(f"{path} has tables but no projection schema version")
    if version > supported:
        raise SchemaTooNewError(version, supported)
    if version > 0 and app_id != APPLICATION_ID:
        raise NotAProjectionError(f"{path} has user_version {version} but not our application_id")
    return version


def migrate(conn: apsw.Connection, migrations: Sequence[Migration] = MIGRATIONS, path: str = "") -> int:
    """Bring the schema up to the latest version, one transaction per step. Returns the version."""
    version = _check_identity(conn, path or conn.filename or ":memory:", supported=len(migrations))
    for migration in migrations[version:]:
        with conn:
            for statement in migration.statements:
                conn.execute(statement)
            conn.pragma("application_id", APPLICATION_ID)
            conn.pragma("user_version", migration.version)
        version = migration.version
    return version


def open_database(path: str | os.PathLike[str], *, readonly: bool = False) -> apsw.Connection:
    """Open (creating and migrating when writable) the projection database at `path`.

    The writer connection uses WAL journal mode and synchronous=NORMAL; the applier's batches start with
    BEGIN IMMEDIATE (`transaction.write_transaction`) so a batch never fails half-way on a lock upgrade.
    A read-only connection (for queries and exports) never migrates: it raises if the file is missing,
    foreign or of another version.

    Raises `SchemaTooNewError` or `NotAProjectionError` (both `ProjectionSchemaError`) when the file must be
    rebuilt rather than opened.
    """
    filename = os.fspath(path)
    if readonly:
        if not Path(filename).exists():
            raise FileNotFoundError(filename)
        conn = apsw.Connection(filename, flags=apsw.SQLITE_OPEN_READONLY)
    else:
        conn = apsw.Connection(filename, flags=apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_CREATE)
    try:
        _configure(conn)
        if readonly:
            version = _check_identity(conn, filename)
            if version != SCHEMA_VERSION:
                raise ProjectionSchemaError(
                    f"{filename} has schema version {version}; this code reads {SCHEMA_VERSION}"
                )
            conn.pragma("query_only", True)
            return conn
        _check_identity(conn, filename)  # before touching the journal mode of someone else's file
        if filename not in ("", ":memory:"):
            conn.pragma("journal_mode", "wal")
        conn.pragma("synchronous", "normal")
        conn.transaction_mode = "IMMEDIATE"
        migrate(conn, path=filename)
        return conn
    except (apsw.NotADBError, apsw.CorruptError) as exc:
        conn.close()
        raise NotAProjectionError(f"{filename} is not a readable SQLite database: {exc}") from exc
    except BaseException:
        conn.close()
        raise


def open_read_connection(path: str | os.PathLike[str]) -> apsw.Connection:
    """A read-only connection for queries and exports (see `open_database`)."""
    return open_database(path, readonly=True)
