"""Start-up recovery: what it finds, what it repairs, what it refuses, and the one line that says so.
Campaign 5 (the database deleted or overwritten while stopped) is here too."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest

from recovery.lock import DataDirBusy, DataDirLock, holder
from recovery.replay import database_digest, projection_digest_of_log
from recovery.startup import StartupRefused, read_last_recovery, recover
from service import convert
from service.projection import apply_batch, open_database, rebuild_database
from service.projection.schema import MIGRATIONS, SCHEMA_VERSION, migrate
from tests.recovery.records import varied_records, write_records
from tests.recovery.support import make_config
from wal import WalWriter, list_segments

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def data(tmp_path: Path):
    """A data directory with a 300-record log in several segments and no database yet."""
    config = make_config(tmp_path / "data")
    records = varied_records(300, seed=3)
    write_records(config.wal_dir, records)
    return config, records


def assert_is_projection_of_log(config, tmp_path: Path) -> None:
    applied, live = database_digest(config.db_path)
    expected_lsn, expected = projection_digest_of_log(config.wal_dir, tmp_path / "expected.sqlite3")
    assert (applied, live) == (expected_lsn, expected)


def test_an_empty_data_directory_starts_with_an_empty_database(tmp_path: Path) -> None:
    config = make_config(tmp_path / "fresh")
    report = recover(config, progress=False)
    assert report.last_lsn == 0 and report.applied_lsn == 0 and report.restored == ()
    assert report.line.startswith("recovery: log empty; database missing")
    assert config.db_path.exists()


def test_a_missing_database_is_rebuilt_and_the_events_come_from_it(data, tmp_path: Path) -> None:
    config, _records = data
    report = recover(config, progress=False)
    print(report.line)
    assert report.rebuilt and report.database == "missing" and report.applied_lsn == report.last_lsn == 300
    assert "database missing; rebuilt from the log (300 records)" in report.line
    assert {e.guild_id for e in report.restored} == {"1001", "1002", "1003"}
    assert_is_projection_of_log(config, tmp_path)
    again = recover(config, progress=False)
    assert not again.rebuilt and again.applied_records == 0
    assert "database up to date at LSN 300" in again.line


def test_a_database_behind_the_log_gets_the_tail_applied(data, tmp_path: Path) -> None:
    config, records = data
    rebuild_database(config.db_path, enumerate(records[:240], start=1))
    report = recover(config, progress=False)
    assert not report.rebuilt and report.applied_before == 240 and report.applied_records == 60
    assert "database behind by 60, applied in" in report.line
    assert_is_projection_of_log(config, tmp_path)


@pytest.mark.parametrize(
    ("damage", "status"),
    [
        ("deleted", "missing"),
        ("garbage", "unreadable"),
        ("truncated", "unreadable"),
        ("empty", "empty"),
        ("newer_schema", "schema"),
        ("older_schema", "schema"),
        ("foreign", "unreadable"),
        ("ahead", "ahead"),
    ],
)
def test_campaign_5_a_database_lost_or_damaged_while_stopped_is_rebuilt(
    data, tmp_path: Path, damage: str, status: str
) -> None:
    config, records = data
    recover(config, progress=False)
    db = config.db_path
    if damage == "deleted":
        db.unlink()
    elif damage == "garbage":
        db.write_bytes(os.urandom(db.stat().st_size))
    elif damage == "truncated":
        with open(db, "r+b") as f:
            f.truncate(1000)
    elif damage == "empty":
        db.write_bytes(b"")
    elif damage == "newer_schema":
        conn = open_database(db)
        conn.pragma("user_version", SCHEMA_VERSION + 1)
        conn.close()
    elif damage == "older_schema":  # version 1 kept ids as text: the database is rebuilt, not migrated
        import apsw

        db.unlink()
        conn = apsw.Connection(str(db))
        migrate(conn, MIGRATIONS[:1])
        # Today's applier writes settlements (version 3): a stand-in table for its statements, then gone.
        conn.execute(
            "CREATE TABLE settlements (lsn, join_lsn, timestamp_us, guild_id, user_id, invite_code, "
            "staff_id, staff_username, settled_by, settled_by_name, reason, join_settled)"
        )
        conn.execute("ALTER TABLE joins ADD COLUMN settled_lsn")
        apply_batch(conn, list(enumerate(records, start=1)))
        conn.execute("DROP TABLE settlements")
        conn.execute("ALTER TABLE joins DROP COLUMN settled_lsn")
        conn.close()
    elif damage == "foreign":
        import apsw

        db.unlink()
        conn = apsw.Connection(str(db))
        conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
        conn.close()
    elif damage == "ahead":
        more = varied_records(320, seed=3)[300:]  # records the log does not have
        conn = open_database(db)
        apply_batch(conn, list(enumerate(more, start=301)))
        conn.close()
    report = recover(config, progress=False)
    print(f"{damage}: {report.line}")
    assert report.rebuilt and report.database == status
    assert report.applied_lsn == 300
    if status in ("unreadable", "schema", "ahead"):
        assert report.set_aside is not None and report.set_aside.exists()  # set aside, never deleted
        assert report.set_aside.name in report.line
    assert_is_projection_of_log(config, tmp_path)
    assert len(records) == 300


def test_a_torn_tail_is_cut_and_reported(data, tmp_path: Path) -> None:
    config, _ = data
    last = list_segments(config.wal_dir)[-1].path
    with open(last, "ab") as f:
        f.write(b"\x50\x00\x00\x00" + b"\x13" * 33)  # half a frame: a write cut by a crash
    report = recover(config, progress=False)
    assert report.torn_bytes_cut == 37 and report.torn_segment == last.name
    assert f"torn tail 37 bytes cut in {last.name}" in report.line
    assert report.last_lsn == 300


def test_a_flipped_byte_in_a_sealed_segment_refuses_the_start_and_names_it(data) -> None:
    config, _ = data
    sealed = list_segments(config.wal_dir)[1]
    raw = bytearray(sealed.path.read_bytes())
    raw[200] ^= 0x40
    sealed.path.write_bytes(bytes(raw))
    with pytest.raises(StartupRefused) as refused:
        recover(config, progress=False)
    message = str(refused.value)
    print(message)
    assert refused.value.segment == sealed.name and refused.value.offset is not None
    assert refused.value.lsn is not None and sealed.first_lsn <= refused.value.lsn <= (sealed.last_lsn or 0)
    assert sealed.name in message and f"LSN {refused.value.lsn}" in message
    assert "invite-ledger restore --from" in message and str(config.data_dir.absolute()) in message
    assert refused.value.exit_code != 0
    assert not config.db_path.exists()  # nothing was changed
    last = read_last_recovery(config.data_dir)
    assert last is not None and last["ok"] is False and sealed.name in last["line"]


def test_the_last_recovery_is_kept_for_checkpoint(data) -> None:
    config, _ = data
    report = recover(config, progress=False)
    saved = json.loads((config.data_dir / "last-recovery.json").read_text())
    assert saved["line"] == report.line and saved["ok"] is True and saved["last_lsn"] == 300


def test_recovery_refuses_while_another_process_holds_the_data_directory(data) -> None:
    config, _ = data
    holder_code = (
        "import sys, time; from recovery.lock import hold_data_dir; "
        f"hold_data_dir({str(config.data_dir)!r}, 'service'); print('held', flush=True); time.sleep(30)"
    )
    child = subprocess.Popen([sys.executable, "-c", holder_code], cwd=REPO, stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == b"held"
        found = holder(config.data_dir)
        assert found is not None and found.pid == child.pid and found.purpose == "service"
        started = time.monotonic()
        with pytest.raises(DataDirBusy, match=f"pid {child.pid}"):
            recover(config, progress=False)
        assert time.monotonic() - started < 10
    finally:
        child.kill()
        child.wait(timeout=10)
    assert holder(config.data_dir) is None  # the kernel dropped the lock with the process
    with DataDirLock(config.data_dir, "service"):  # re-entrant inside one process: recover() may run here
        assert recover(config, progress=False).applied_lsn == 300


def test_a_torn_tail_in_preallocated_space_is_not_reported_as_lost_megabytes(tmp_path: Path) -> None:
    config = make_config(
        tmp_path / "data", INVITE_LEDGER_WAL_SEGMENT_BYTES="65536", INVITE_LEDGER_WAL_BATCH_BYTES="4096"
    )

    async def write_some() -> None:
        writer = WalWriter(config.wal_dir, segment_bytes=65536)
        async with anyio.create_task_group() as tg:
            await tg.start(writer.run)
            for record in varied_records(20, seed=1):
                await writer.append(*convert.encode(record))
            tg.cancel_scope.cancel()

    anyio.run(write_some)
    [segment] = list_segments(config.wal_dir)
    assert segment.size == 65536  # preallocated: zeros after the last record
    with open(segment.path, "r+b") as f:
        f.seek(segment.valid_size)
        f.write(b"\x40\x00\x00\x00" + b"\x01" * 30)  # a write cut short by a crash
    report = recover(config, progress=False)
    print(report.line)
    assert report.torn_offset == segment.valid_size
    assert f"torn tail cut in {segment.name} at byte {segment.valid_size:,}" in report.line
    assert "preallocated space" in report.line
