"""Schema, migrations, the batch applier's contract (WAL rule 7), erasure, and the rebuild fast path."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import apsw
import pytest

from service.projection import (
    ERASED,
    SCHEMA_VERSION,
    LsnGapError,
    NotAProjectionError,
    ProjectionSchemaError,
    SchemaTooNewError,
    applied_lsn,
    apply_batch,
    dump_tables,
    open_database,
    open_read_connection,
    projection_digest,
    rebuild_apply,
    rebuild_database,
)
from service.projection.schema import APPLICATION_ID, MIGRATIONS, Migration, from_us, iso_sql, migrate, to_us
from service.records import (
    AttributionKind,
    InviteSnapshotTaken,
    InviteState,
    JoinFlag,
    JoinRecorded,
    JoinSettled,
    MemberLeft,
    StaffIbRemoved,
    StaffIbSet,
    UserErased,
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def join(
    user: str, at: int = 0, *, guild: str = "g", code: str | None = "abc", staff: str | None = "s1", **kw
):
    kind = kw.pop("kind", AttributionKind.EXACT if staff else AttributionKind.UNKNOWN)
    return JoinRecorded(
        timestamp=T0 + timedelta(seconds=at),
        guild_id=guild,
        guild_name="PipVault",
        user_id=user,
        username=kw.pop("username", f"{user}_name"),
        display_name=kw.pop("display_name", f"{user} Display"),
        kind=kind,
        invite_code=code,
        staff_id=staff,
        staff_username=None if staff is None else f"{staff}#0001",
        uses_before=kw.pop("uses_before", 1),
        uses_after=kw.pop("uses_after", 2),
        account_created_at=kw.pop("account_created_at", T0 - timedelta(days=400)),
        **kw,
    )


def numbered(*records, first: int = 1):
    return list(enumerate(records, start=first))


@pytest.fixture
def db(tmp_path: Path):
    conn = open_database(tmp_path / "projection.sqlite3")
    yield conn
    conn.close()


def rows(conn: apsw.Connection, sql: str, *params) -> list[tuple]:
    return [tuple(row) for row in conn.execute(sql, params)]


# --- schema and opening -------------------------------------------------------------------------------


def test_a_new_database_is_migrated_in_wal_mode_with_our_identity(tmp_path: Path):
    conn = open_database(tmp_path / "p.sqlite3")
    assert conn.pragma("journal_mode") == "wal"
    assert conn.pragma("user_version") == SCHEMA_VERSION == len(MIGRATIONS)
    assert conn.pragma("application_id") == APPLICATION_ID
    assert applied_lsn(conn) == 0
    indexes = {name for (name,) in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'index'")}
    assert {"joins_by_user", "joins_by_time", "joins_by_code", "joins_by_staff"} <= indexes
    conn.close()
    again = open_database(tmp_path / "p.sqlite3")  # reopening migrates nothing and keeps the state
    assert again.pragma("user_version") == SCHEMA_VERSION
    again.close()


def test_migrations_are_numbered_one_after_another():
    assert [m.version for m in MIGRATIONS] == list(range(1, len(MIGRATIONS) + 1))


def test_an_older_database_is_migrated_step_by_step_and_then_refused_by_older_code(tmp_path: Path):
    path = tmp_path / "p.sqlite3"
    conn = open_database(path)
    apply_batch(conn, numbered(join("u1")))
    later = Migration(
        SCHEMA_VERSION + 1, "a column a later version needs", ("ALTER TABLE joins ADD COLUMN note TEXT",)
    )
    assert migrate(conn, (*MIGRATIONS, later)) == SCHEMA_VERSION + 1
    assert conn.pragma("user_version") == SCHEMA_VERSION + 1
    assert rows(conn, "SELECT user_id, note FROM joins") == [("u1", None)]  # rows kept, column added
    conn.close()
    with pytest.raises(SchemaTooNewError):  # this code does not know the later version: recovery rebuilds
        open_database(path)
    with pytest.raises(ProjectionSchemaError):
        open_read_connection(path)


def test_a_newer_schema_version_is_refused_with_a_typed_error(tmp_path: Path):
    path = tmp_path / "p.sqlite3"
    open_database(path).close()
    raw = sqlite3.connect(path)
    raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    raw.commit()
    raw.close()
    for opener in (open_database, open_read_connection):
        with pytest.raises(SchemaTooNewError) as raised:
            opener(path)
        assert (raised.value.found, raised.value.supported) == (SCHEMA_VERSION + 1, SCHEMA_VERSION)


def test_another_applications_database_is_refused_and_left_alone(tmp_path: Path):
    path = tmp_path / "other.sqlite3"
    raw = sqlite3.connect(path)
    raw.execute("CREATE TABLE notes (body TEXT)")
    raw.commit()
    raw.close()
    with pytest.raises(NotAProjectionError):
        open_database(path)
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA journal_mode").fetchone() == ("delete",)  # not switched to WAL
    raw.execute("PRAGMA application_id = 1234")
    raw.commit()
    raw.close()
    with pytest.raises(NotAProjectionError, match="another application"):
        open_database(path)


def test_a_file_that_is_not_sqlite_is_a_schema_error(tmp_path: Path):
    path = tmp_path / "garbage.sqlite3"
    path.write_bytes(b"this is not a database at all" * 200)
    with pytest.raises(ProjectionSchemaError):
        open_database(path)


def test_a_read_connection_never_creates_and_cannot_write(tmp_path: Path, db):
    with pytest.raises(FileNotFoundError):
        open_read_connection(tmp_path / "missing.sqlite3")
    apply_batch(db, numbered(join("u1")))
    reader = open_read_connection(db.filename)
    assert applied_lsn(reader) == 1
    with pytest.raises(apsw.ReadOnlyError):
        reader.execute("DELETE FROM joins")
    reader.close()


def test_times_round_trip_through_microseconds_and_the_sql_formatter():
    conn = apsw.Connection(":memory:")
    for value in (
        T0,
        datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
        datetime(2026, 1, 1, 14, 0, 0, 5, tzinfo=UTC).astimezone(UTC),
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
    ):
        assert from_us(to_us(value)) == value
        assert conn.execute(f"SELECT {iso_sql('?1')}", (to_us(value),)).get == value.isoformat()
    with pytest.raises(TypeError):
        to_us(datetime(2026, 1, 1))  # naive: refuse to guess the zone


# --- apply_batch: WAL rule 7 --------------------------------------------------------------------------


def test_a_batch_and_its_applied_lsn_commit_together_and_replays_are_skipped(db):
    batch = numbered(join("u1", 1), join("u2", 2), MemberLeft(T0, "g", "u1"))
    assert apply_batch(db, batch) == 3
    before = list(dump_tables(db))
    assert apply_batch(db, batch) == 3  # the same batch again: nothing applied twice
    assert apply_batch(db, batch[1:] + numbered(join("u3", 4), first=4)) == 4  # overlap, then new
    assert applied_lsn(db) == 4
    assert rows(db, "SELECT lsn, user_id FROM joins ORDER BY lsn") == [(1, "u1"), (2, "u2"), (4, "u3")]
    assert before != list(dump_tables(db))
    assert apply_batch(db, []) == 4


def test_a_gap_raises_and_applies_nothing(db):
    apply_batch(db, numbered(join("u1")))
    with pytest.raises(LsnGapError) as raised:
        apply_batch(db, numbered(join("u2"), first=3))
    assert (raised.value.expected, raised.value.got) == (2, 3)
    with pytest.raises(LsnGapError):  # the gap inside a batch also rejects its good start
        apply_batch(db, [(2, join("u2")), (4, join("u3"))])
    assert applied_lsn(db) == 1
    assert rows(db, "SELECT count(*) FROM joins") == [(1,)]


def test_lsns_start_at_one(db):
    with pytest.raises(ValueError, match="start at 1"):
        apply_batch(db, [(0, join("u1"))])
    with pytest.raises(LsnGapError):
        apply_batch(db, [(2, join("u1"))])


def test_a_failure_inside_a_batch_rolls_back_its_rows_and_its_applied_lsn(db):
    apply_batch(db, numbered(join("u1")))
    with pytest.raises(TypeError, match="not a log record"):
        apply_batch(db, [(2, join("u2")), (3, MemberLeft(T0, "g", "u1")), (4, "not a record")])  # type: ignore[list-item]
    assert applied_lsn(db) == 1
    assert rows(db, "SELECT count(*) FROM joins") == [(1,)]
    assert rows(db, "SELECT in_guild FROM members WHERE user_id = 'u1'") == [(1,)]


def test_joins_store_every_field_with_candidates_and_flags_as_json(db):
    record = join(
        "u1",
        code=None,
        staff=None,
        kind=AttributionKind.AMBIGUOUS,
        candidates=("abc", 'd"é'),
        flags=(JoinFlag.REJOIN, JoinFlag.YOUNG_ACCOUNT),
        decided_at=T0 + timedelta(milliseconds=250),
    )
    apply_batch(db, numbered(record))
    (row,) = rows(
        db,
        "SELECT timestamp_us, kind, invite_code, staff_id, candidates, flags, account_created_us, decided_us "
        "FROM joins",
    )
    assert row == (
        to_us(record.timestamp),
        "ambiguous",
        None,
        None,
        '["abc","d\\"é"]',
        '["rejoin","young_account"]',
        to_us(record.account_created_at),
        to_us(record.decided_at),
    )


def test_members_follow_joins_and_leaves(db):
    apply_batch(
        db,
        numbered(
            MemberLeft(T0, "g", "old"),  # joined before the bot: a leave still makes a member row
            join("u1", 1),
            MemberLeft(T0 + timedelta(seconds=2), "g", "u1"),
            join("u1", 3),
        ),
    )
    assert rows(db, "SELECT * FROM members ORDER BY user_id") == [
        ("g", "old", 0, 0, None, None, to_us(T0), 1),
        ("g", "u1", 1, 2, 2, 4, to_us(T0 + timedelta(seconds=2)), 3),
    ]


def test_staff_profiles_are_set_replaced_and_removed(db):
    apply_batch(
        db,
        numbered(
            StaffIbSet(T0, "g", "s1", "Travis#1", "https://broker/ref/a", "A1", "admin"),
            StaffIbSet(T0, "g", "s2", "Maria#2", "https://broker/ref/m", "M1", "admin"),
            StaffIbSet(T0 + timedelta(hours=1), "g", "s1", "Travis#1", "https://broker/ref/b", "B2", "owner"),
            StaffIbRemoved(T0, "g", "s2", "admin"),
        ),
    )
    assert rows(db, "SELECT staff_id, ib_link, ib_code, set_by, lsn FROM staff_ib") == [
        ("s1", "https://broker/ref/b", "B2", "owner", 3)
    ]


def test_a_snapshot_replaces_the_guilds_previous_invites(db):
    def snap(*invites: InviteState) -> InviteSnapshotTaken:
        return InviteSnapshotTaken(T0, "g", "PipVault", invites, vanity_code="pip", vanity_uses=9)

    apply_batch(
        db,
        numbered(
            snap(InviteState("abc", 3, 0, "s1", "Travis"), InviteState("old", 1)),
            snap(InviteState("abc", 4, 10, "s1", "Travis")),
        ),
    )
    assert rows(db, "SELECT code, uses, max_uses, inviter_id FROM snapshot_invites") == [("abc", 4, 10, "s1")]
    assert rows(db, "SELECT guild_id, lsn, vanity_code, vanity_uses FROM invite_snapshots") == [
        ("g", 2, "pip", 9)
    ]


def test_erasure_blanks_personal_fields_keeps_counts_and_later_joins_are_kept(db):
    apply_batch(
        db,
        numbered(
            StaffIbSet(T0, "g", "s1", "Travis#1", "https://broker/ref/t", "T1", "admin"),
            InviteSnapshotTaken(T0, "g", "PipVault", (InviteState("abc", 1, 0, "s1", "Travis#1"),)),
            join("u1", 1, username="john", display_name="John Doe"),
            join("s1", 2, staff="s2", code="def"),  # the staff member joined too
            join("u2", 3),  # someone s1 invited
            join("u1", 4, guild="other"),  # another guild: untouched
            MemberLeft(T0 + timedelta(seconds=5), "g", "u1"),
            UserErased(T0 + timedelta(days=1), "g", "u1", "u1"),
            UserErased(T0 + timedelta(days=1), "g", "s1", "s1"),
            join("u1", 10, username="john_again"),  # a new join after the erasure is recorded as usual
        ),
    )
    assert rows(
        db,
        "SELECT lsn, user_id, username, display_name, account_created_us, staff_username, erased_lsn "
        "FROM joins",
    ) == [
        (3, None, ERASED, ERASED, None, ERASED, 8),
        (4, None, ERASED, ERASED, None, "s2#0001", 9),
        (5, "u2", "u2_name", "u2 Display", to_us(T0 - timedelta(days=400)), ERASED, None),
        (6, "u1", "u1_name", "u1 Display", to_us(T0 - timedelta(days=400)), "s1#0001", None),
        (10, "u1", "john_again", "u1 Display", to_us(T0 - timedelta(days=400)), "s1#0001", None),
    ]
    # What the counts need stays: time, kind, code, staff id.
    assert rows(db, "SELECT kind, invite_code, staff_id FROM joins WHERE lsn = 3") == [("exact", "abc", "s1")]
    assert rows(db, "SELECT count(*) FROM leaves") == [(0,)]
    assert rows(db, "SELECT guild_id, user_id, join_count FROM members ORDER BY guild_id, user_id") == [
        ("g", "u1", 1),
        ("g", "u2", 1),
        ("other", "u1", 1),
    ]
    assert rows(db, "SELECT count(*) FROM staff_ib") == [(0,)]
    assert rows(db, "SELECT inviter_id, inviter_name FROM snapshot_invites") == [("s1", ERASED)]
    assert rows(db, "SELECT lsn, user_id, requested_by, joins_redacted FROM erasures") == [
        (8, "u1", "u1", 1),
        (9, "s1", "s1", 1),
    ]
    assert rows(db, "SELECT kind, joins FROM join_counts WHERE guild_id = 'g'") == [("exact", 4)]


def settle(join_lsn: int, user: str, code: str, staff: str | None, *, by: str = "admin", at: int = 100):
    name = None if staff is None else f"{staff}#0001"
    reason = f"{user} showed the invite link in a DM"
    return JoinSettled(
        T0 + timedelta(seconds=at), "g", join_lsn, user, code, staff, name, by, f"{by}_name", reason
    )


def test_a_settlement_credits_an_ambiguous_join_and_a_later_one_corrects_it(db):
    ambiguous = dict(code=None, staff=None, kind=AttributionKind.AMBIGUOUS, candidates=("abc", "def"))
    apply_batch(
        db,
        numbered(
            join("u1", 1, **ambiguous),
            join("u2", 2),  # exact: the bot credited it, so no settlement may change it
            join("u3", 3, code=None, staff=None, kind=AttributionKind.VANITY),
            settle(1, "u1", "abc", "s1"),
            settle(2, "u2", "def", "s2"),
            settle(3, "u3", "def", "s2"),
            settle(9, "u1", "abc", "s1"),  # no such join (yet): recorded, changes nothing
            settle(1, "u1", "def", "s2", by="owner", at=200),  # a correction: the latest wins
        ),
    )
    assert rows(db, "SELECT lsn, kind, invite_code, staff_id, staff_username, settled_lsn FROM joins") == [
        (
            1,
            "ambiguous",
            "def",
            "s2",
            "s2#0001",
            8,
        ),  # the bot's verdict stays; the credit is the settlement's
        (2, "exact", "abc", "s1", "s1#0001", None),
        (3, "vanity", None, None, None, None),
    ]
    assert rows(db, "SELECT lsn, join_lsn, invite_code, settled_by, join_settled FROM settlements") == [
        (4, 1, "abc", "admin", 1),
        (5, 2, "def", "admin", 0),
        (6, 3, "def", "admin", 0),
        (7, 9, "abc", "admin", 0),
        (8, 1, "def", "owner", 1),
    ]
    # Counts per kind are the bot's verdicts; counts per invite and staff member follow the settlement.
    assert rows(db, "SELECT kind, joins FROM join_counts WHERE guild_id = 'g' ORDER BY kind") == [
        ("ambiguous", 1),
        ("exact", 1),
        ("vanity", 1),
    ]


def test_erasure_redacts_the_settlements_of_the_user_and_names_of_settler_and_staff(db):
    ambiguous = dict(code=None, staff=None, kind=AttributionKind.AMBIGUOUS)
    apply_batch(
        db,
        numbered(
            join("u1", 1, **ambiguous),
            join("u2", 2, **ambiguous),
            settle(1, "u1", "abc", "s1", by="boss"),
            settle(2, "u2", "abc", "s1", by="u1"),  # u1 is also staff here
            UserErased(T0 + timedelta(days=1), "g", "u1", "u1"),
            UserErased(T0 + timedelta(days=1), "g", "s1", "s1"),
            settle(1, "u1", "abc", "s1", at=300),  # after the erasures: applied as written
        ),
    )
    assert rows(
        db, "SELECT lsn, user_id, staff_username, settled_by, settled_by_name, reason FROM settlements"
    ) == [
        (3, None, ERASED, "boss", "boss_name", ERASED),
        (4, "u2", ERASED, "u1", ERASED, "u2 showed the invite link in a DM"),
        (7, "u1", "s1#0001", "admin", "admin_name", "u1 showed the invite link in a DM"),
    ]
    assert rows(db, "SELECT lsn, user_id, invite_code, staff_id, settled_lsn FROM joins") == [
        (1, None, "abc", "s1", 7),
        (2, "u2", "abc", "s1", 4),
    ]


def test_a_schema_2_database_gains_settlements_and_keeps_its_rows(tmp_path: Path):
    conn = apsw.Connection(str(tmp_path / "old.sqlite3"))
    migrate(conn, MIGRATIONS[:2])
    apply_batch(conn, numbered(join("u1", 1)))
    assert migrate(conn) == SCHEMA_VERSION
    assert rows(conn, "SELECT lsn, user_id, settled_lsn FROM joins") == [(1, "u1", None)]
    apply_batch(conn, numbered(settle(1, "u1", "abc", "s1"), first=2))  # an exact join: not changed
    assert rows(conn, "SELECT join_lsn, join_settled FROM settlements") == [(1, 0)]
    conn.close()


# --- rebuilds ------------------------------------------------------------------------------------------


def sample_log():
    return numbered(
        StaffIbSet(T0, "g", "s1", "Travis#1", "https://broker/ref/t", "T1", "admin"),
        *[
            join(f"u{i % 7}", i, staff=("s1", "s2", None)[i % 3], code=("abc", "def", None)[i % 3])
            for i in range(40)
        ],
        MemberLeft(T0, "g", "u1"),
        UserErased(T0, "g", "u2", "u2"),
        *[join(f"u{i % 5}", 100 + i) for i in range(10)],
        MemberLeft(T0, "g", "u9"),
    )


def test_rebuild_apply_and_rebuild_database_equal_batch_by_batch_application(tmp_path: Path, db):
    log = sample_log()
    for i in range(0, len(log), 3):
        apply_batch(db, log[i : i + 3])
    expected = projection_digest(db)

    fresh = open_database(tmp_path / "bulk.sqlite3")
    assert rebuild_apply(fresh, iter(log), batch_size=1000) == len(log)
    assert projection_digest(fresh) == expected
    fresh.close()

    target = tmp_path / "rebuilt.sqlite3"
    assert rebuild_database(target, iter(log), batch_size=7) == len(log)
    rebuilt = open_database(target)
    assert rebuilt.pragma("journal_mode") == "wal"
    assert projection_digest(rebuilt) == expected
    # the indexes dropped during the load are all back
    assert rows(
        rebuilt, "SELECT name FROM sqlite_schema WHERE type = 'index' AND sql NOT NULL ORDER BY name"
    ) == rows(db, "SELECT name FROM sqlite_schema WHERE type = 'index' AND sql NOT NULL ORDER BY name")
    rebuilt.close()


def test_rebuild_database_replaces_the_old_file_and_its_stale_wal(tmp_path: Path):
    target = tmp_path / "projection.sqlite3"
    old = open_database(target)
    old.pragma("wal_autocheckpoint", 0)  # keep the old rows in the -wal file...
    apply_batch(old, numbered(join("stale")))
    wal = Path(str(target) + "-wal")
    stale = wal.read_bytes()
    old.close()
    wal.write_bytes(stale)  # ...and leave it behind, as a crash would
    log = numbered(join("fresh"))
    rebuild_database(target, iter(log))
    conn = open_database(target)
    assert rows(conn, "SELECT user_id FROM joins") == [("fresh",)]
    conn.close()
    assert sorted(p.name for p in tmp_path.iterdir() if "rebuilding" in p.name) == []


def test_a_failed_rebuild_leaves_the_old_database_untouched(tmp_path: Path):
    target = tmp_path / "projection.sqlite3"
    old = open_database(target)
    apply_batch(old, numbered(join("keep")))
    digest = projection_digest(old)
    old.close()
    with pytest.raises(LsnGapError):
        rebuild_database(target, iter(numbered(join("a")) + numbered(join("b"), first=3)), batch_size=1)
    conn = open_database(target)
    assert projection_digest(conn) == digest
    conn.close()
    assert [p.name for p in tmp_path.iterdir() if "rebuilding" in p.name] == []


def test_the_digest_sees_every_change(db):
    apply_batch(db, numbered(join("u1")))
    first = projection_digest(db)
    assert projection_digest(db) == first
    apply_batch(db, numbered(StaffIbSet(T0, "g", "s9", "n", "l", "c", "a"), first=2))
    assert projection_digest(db) != first
