"""Ids stored as integers when they are one (`service.projection.ids`, schema version 2): the SQL that
stores them and the Python that looks them up agree on every text, every text reads back exactly, and a
version 1 database migrates to the same content."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import apsw
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from service.projection import (
    apply_batch,
    dump_tables,
    export_jsonl,
    join_logs,
    lookup_user,
    open_database,
    open_read_connection,
    staff_counts,
)
from service.projection.ids import ID_COLUMNS, STORED_IDS, id_param, stored_id_sql
from service.projection.schema import MIGRATIONS, SCHEMA_VERSION, migrate
from service.records import AttributionKind, JoinRecorded, MemberLeft, UserErased

T0 = datetime(2025, 1, 1, tzinfo=UTC)
# What SQLite's own affinities would change: leading zeros, signs, spaces, exponents, out of range.
ODD = (
    "007",
    "+7",
    " 7",
    "7 ",
    "3.0e+5",
    "1e3",
    "-0",
    "0x10",
    "1_000",
    "١٢",
    "12\x00",
    "",
    "g1",
    "9223372036854775808",
    "-9223372036854775809",
    "18446744073709551616",
    "1" * 30,
)
CANONICAL = ("0", "7", "-1", "811111111111111111", "9223372036854775807", "-9223372036854775808")

id_texts = (
    st.text(max_size=25)
    | st.integers(-(2**64), 2**64).map(str)
    | st.from_regex(r"[-+ 0]?[0-9]{1,20}", fullmatch=True)
    | st.sampled_from(ODD + CANONICAL)
)


@pytest.fixture
def memory() -> apsw.Connection:
    return apsw.Connection(":memory:")


@settings(max_examples=500, deadline=None)
@given(text=id_texts)
@example(text="18446744073709551615")
def test_the_sql_and_the_python_store_the_same_value_and_read_back_the_text(text):
    conn = apsw.Connection(":memory:")
    conn.execute("CREATE TABLE t (id)")  # untyped, as the schema's id columns
    conn.execute(f"INSERT INTO t VALUES ({stored_id_sql('?1')})", (text,))
    stored, as_text = conn.execute("SELECT id, CAST(id AS TEXT) FROM t").fetchone()
    assert type(stored) is type(id_param(text)) and stored == id_param(text)
    assert as_text == text
    # a lookup by the Python form finds the row
    assert conn.execute("SELECT count(*) FROM t WHERE id = ?", (id_param(text),)).get == 1
    # the remembered form (guild and staff ids) is the same, and the SQL keeps a stored form as it is
    assert STORED_IDS[text] == stored and type(STORED_IDS[text]) is type(stored)
    again = conn.execute(f"SELECT {stored_id_sql('?1')}", (stored,)).get
    assert type(again) is type(stored) and again == stored


@pytest.mark.parametrize("text", CANONICAL)
def test_a_canonical_integer_is_stored_as_one(text):
    assert id_param(text) == int(text)


@pytest.mark.parametrize("text", ODD)
def test_any_other_text_is_stored_as_it_is(text):
    assert id_param(text) == text


def test_null_stays_null(memory):
    assert memory.execute(f"SELECT {stored_id_sql('?1')}", (None,)).get is None
    assert STORED_IDS[None] is None


def join(guild: str, user: str, staff: str | None, at: datetime) -> JoinRecorded:
    return JoinRecorded(
        timestamp=at,
        guild_id=guild,
        guild_name="G",
        user_id=user,
        username=f"name {user}",
        display_name="D",
        kind=AttributionKind.EXACT if staff else AttributionKind.UNKNOWN,
        invite_code="abc" if staff else None,
        staff_id=staff,
        staff_username="S" if staff else None,
        uses_before=0,
        uses_after=1,
    )


GUILD, USER, STAFF = "811111111111111111", "1000000001180865442", "900000000000000009"
RECORDS = [
    join(GUILD, USER, STAFF, T0),
    join(GUILD, "007", STAFF, T0 + timedelta(seconds=1)),
    join(GUILD, "7", "+9", T0 + timedelta(seconds=2)),
    join("g1", USER, None, T0 + timedelta(seconds=3)),
    MemberLeft(T0 + timedelta(seconds=4), GUILD, "007"),
    join(GUILD, "10", "9", T0 + timedelta(seconds=5)),
    UserErased(T0 + timedelta(seconds=6), GUILD, "7", "1"),
    join(GUILD, "7", STAFF, T0 + timedelta(seconds=7)),
]


def test_the_big_tables_store_integers_and_every_query_gives_back_the_text(tmp_path: Path):
    conn = open_database(tmp_path / "p.sqlite3")
    apply_batch(conn, list(enumerate(RECORDS, start=1)))
    typed = dict(conn.execute("SELECT lsn, typeof(user_id) FROM joins").fetchall())
    assert typed == {1: "integer", 2: "text", 3: "null", 4: "integer", 6: "integer", 8: "integer"}
    assert conn.execute("SELECT DISTINCT typeof(guild_id) FROM members ORDER BY 1").fetchall() == [
        ("integer",),
        ("text",),
    ]
    conn.close()
    reader = open_read_connection(tmp_path / "p.sqlite3")
    found = lookup_user(reader, GUILD, "007")
    assert found.latest_join is not None and found.latest_join.user_id == "007"
    assert (found.latest_join.guild_id, found.latest_join.staff_id) == (GUILD, STAFF)
    assert [e.event for e in found.history] == ["join", "leave"]
    assert found.member is not None and not found.member.in_guild
    assert lookup_user(reader, GUILD, "7").latest_join.lsn == 8  # type: ignore[union-attr]
    assert lookup_user(reader, GUILD, "07").latest_join is None
    page = join_logs(reader, GUILD, staff_id=STAFF)
    assert [(e.user_id, e.staff_id) for e in page.entries] == [("7", STAFF), ("007", STAFF), (USER, STAFF)]
    assert [e.lsn for e in join_logs(reader, GUILD, staff_id="+9").entries] == [3]
    assert [e.lsn for e in join_logs(reader, GUILD, user_id=USER).entries] == [1]
    # ordered by the staff id's text, as before ids were integers: "10" < "9" < "900..." < ...
    counts = staff_counts(reader, GUILD)
    assert [c.staff_id for c in counts] == [STAFF, "+9", "9"]
    exported = b"".join(export_jsonl(reader, guild_id=GUILD)).decode()
    assert f'"user_id":"{USER}"' in exported and '"user_id":"007"' in exported
    assert f'"guild_id":"{GUILD}"' in exported and f'"staff_id":"{STAFF}"' in exported
    dumped = list(dump_tables(reader))
    assert all(isinstance(row[2], str) for table, row in dumped if table == "joins")
    reader.close()


def test_a_version_1_database_migrates_to_the_content_and_schema_of_a_new_one(tmp_path: Path):
    old = apsw.Connection(str(tmp_path / "old.sqlite3"))
    assert migrate(old, MIGRATIONS[:1]) == 1
    # The statements bind the same texts; version 1's TEXT columns keep them as text. Today's erasure also
    # redacts settlements (version 3): a stand-in table takes those statements and goes before migrating.
    stand_in = "lsn, guild_id, user_id, reason, settled_by, settled_by_name, staff_id, staff_username"
    old.execute(f"CREATE TABLE settlements ({stand_in})")
    apply_batch(old, list(enumerate(RECORDS, start=1)))
    old.execute("DROP TABLE settlements")
    assert old.execute("SELECT DISTINCT typeof(guild_id) FROM joins").fetchall() == [("text",)]
    before = list(dump_tables(old))
    old.close()

    migrated = open_database(tmp_path / "old.sqlite3")
    assert migrated.pragma("user_version") == SCHEMA_VERSION
    # The same rows; version 3 added joins.settled_lsn (NULL) and an empty settlements table.
    assert list(dump_tables(migrated)) == [(t, (*row, None) if t == "joins" else row) for t, row in before]
    fresh = open_database(tmp_path / "new.sqlite3")
    apply_batch(fresh, list(enumerate(RECORDS, start=1)))
    for table, columns in ID_COLUMNS.items():
        raw = f"SELECT {', '.join(columns)} FROM {table} ORDER BY 1, 2"
        assert migrated.execute(raw).fetchall() == fresh.execute(raw).fetchall()
    schema = "SELECT type, name, tbl_name FROM sqlite_schema ORDER BY name"
    assert migrated.execute(schema).fetchall() == fresh.execute(schema).fetchall()
    indexes = "SELECT name, sql FROM sqlite_schema WHERE type = 'index' ORDER BY name"
    assert migrated.execute(indexes).fetchall() == fresh.execute(indexes).fetchall()
    # and the applier goes on from there
    apply_batch(migrated, [(9, join(GUILD, USER, STAFF, T0 + timedelta(seconds=9)))])
    assert migrated.execute("SELECT typeof(user_id) FROM joins WHERE lsn = 9").get == "integer"
    migrated.close()
    fresh.close()
