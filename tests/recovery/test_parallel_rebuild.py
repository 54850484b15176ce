"""The rebuild in parts (worker processes, `recovery.parallel`) against the live applier and against the
sequential rebuild: erasures whose joins lie in other parts, errors in a later part, interruptions."""

from __future__ import annotations

import hashlib
import itertools
import multiprocessing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil
import pytest

from recovery.faultlab.synthetic import write_log
from recovery.parallel import split
from recovery.replay import rebuild_from_log
from service import convert
from service.records import AttributionKind, JoinRecorded, MemberLeft, Record, StaffIbSet, UserErased
from tests.recovery.records import write_records
from tests.recovery.test_rebuild_from_log import (
    Recorded,
    live_database,
    rebuilt_database,
    write_varied_log,
)
from wal import WalCorruption

PARALLEL = {"parallel_from": 1, "parts": 3}
START = datetime(2026, 3, 1, tzinfo=UTC)


def join(n: int, user: str, staff: str | None = None) -> JoinRecorded:
    at = START + timedelta(minutes=n)
    return JoinRecorded(
        timestamp=at,
        guild_id="7",
        guild_name="G",
        user_id=user,
        username=f"u{user}",
        display_name=f"U {user}",
        kind=AttributionKind.EXACT if staff else AttributionKind.UNKNOWN,
        invite_code="c" if staff else None,
        staff_id=staff,
        staff_username=f"s{staff}" if staff else None,
        uses_before=n if staff else None,
        uses_after=n + 1 if staff else None,
        decided_at=at,
    )


def straddling_records() -> list[Record]:
    """Thirty records cut in three parts (LSNs 1-10, 11-20, 21-30): user 1's joins lie in every part
    and are erased in the second, staff member 2 is credited in every part and erased in the second and
    again in the third, and user 1 leaves and joins again after the erasure."""
    records: list[Record] = [StaffIbSet(START, "7", "2", "s2", "https://b.example", "C", "9")]
    for n in range(1, 14):  # LSNs 2-14
        records.append(join(n, "1", "2") if n % 2 else join(n, str(100 + n), "2"))
    records.append(UserErased(START + timedelta(hours=1), "7", "1", "9"))  # LSN 15
    records.append(UserErased(START + timedelta(hours=1), "7", "2", "9"))  # LSN 16
    for n in range(20, 27):  # LSNs 17-23
        records.append(join(n, "1", "2") if n % 2 else join(n, str(100 + n), "3"))
    records.append(MemberLeft(START + timedelta(hours=2), "7", "1"))  # LSN 24
    records.append(UserErased(START + timedelta(hours=2), "7", "2", "9"))  # LSN 25
    for n in range(30, 35):  # LSNs 26-30
        records.append(join(n, "1", "2"))
    assert len(records) == 30
    return records


def test_erasures_redact_only_earlier_joins_across_parts(tmp_path: Path):
    last = write_records(tmp_path / "wal", straddling_records(), segment_bytes=2048, batch=4)
    assert split(last, 3) == [(1, 10), (11, 20), (21, 30)]
    assert rebuild_from_log(tmp_path / "wal", tmp_path / "rebuilt.sqlite3", **PARALLEL) == last
    expected = live_database(tmp_path / "wal", tmp_path / "live.sqlite3", last)
    assert rebuilt_database(tmp_path / "rebuilt.sqlite3") == expected
    rows = {(table, row) for table, row in expected[0]}
    assert any(table == "erasures" for table, _row in rows)


def test_progress_counts_every_record_of_every_part(tmp_path: Path):
    last = write_varied_log(tmp_path / "wal")
    progress = Recorded()
    rebuild_from_log(tmp_path / "wal", tmp_path / "rebuilt.sqlite3", progress=progress, **PARALLEL)
    assert progress.started == [("rebuilding the database from the log", last)]
    assert (progress.advanced, progress.finished) == (last, 1)


def test_split_cuts_the_range_into_consecutive_parts():
    assert split(10, 3) == [(1, 3), (4, 6), (7, 10)]
    assert split(2, 4) == [(1, 1), (2, 2)]
    assert split(100, 2, head_start=10) == [(1, 55), (56, 100)]  # the parent's part starts first
    assert split(10, 2, head_start=10) == [(1, 7), (8, 10)]  # a head start is at most a part's share
    for last, parts in ((1_000_000, 4), (999_999, 3), (7, 7)):
        ranges = split(last, parts)
        assert ranges[0][0] == 1 and ranges[-1][1] == last
        assert all(a[1] + 1 == b[0] for a, b in itertools.pairwise(ranges))


def files_and_digest(directory: Path) -> tuple[list[str], str]:
    names = sorted(p.name for p in directory.iterdir())
    return names, hashlib.sha256((directory / "db.sqlite3").read_bytes()).hexdigest()


def no_child_processes() -> bool:
    """No worker left: multiprocessing's own resource tracker (one per parent, started by the first
    'spawn', ending with the parent) is the only child allowed."""
    children = [
        child
        for child in psutil.Process().children(recursive=True)
        if "multiprocessing.resource_tracker" not in " ".join(child.cmdline())
    ]
    return not multiprocessing.active_children() and not children


def failure(call) -> tuple[type[BaseException], str]:
    with pytest.raises(Exception) as info:  # compared by the caller with the sequential one
        call()
    return type(info.value), str(info.value)


def corrupt_frame_in_a_later_part(wal_dir: Path) -> None:
    """Flip a payload byte in the next-to-last segment: a sealed one, in the last part of three."""
    segments = sorted(wal_dir.iterdir())
    victim = segments[-2]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x40
    victim.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["corrupt frame", "undecodable record", "log shorter than to_lsn"])
def test_an_error_in_a_later_part_is_the_sequential_error_and_leaves_nothing_behind(
    tmp_path: Path, damage: str
):
    wal_dir = tmp_path / "wal"
    db_dir = tmp_path / "db"
    db_dir.mkdir()
    if damage == "corrupt frame":
        write_varied_log(wal_dir)
        corrupt_frame_in_a_later_part(wal_dir)
    elif damage == "log shorter than to_lsn":
        write_varied_log(wal_dir)
    else:
        # A leave the converter refuses (no user) at LSN 800 of 900; the joins around it are fine.
        items = [convert.encode(join(n, str(n))) for n in range(900)]
        items[799] = (items[799][0] + 1, b'{"timestamp":"2026-03-01T00:00:00+00:00","guild_id":"7"}')
        wal_dir.mkdir()
        write_log(wal_dir, iter(items), segment_bytes=8192, batch=7)
    rebuild_from_log(wal_dir, db_dir / "db.sqlite3", to_lsn=50)  # the old database
    before = files_and_digest(db_dir)
    to_lsn = 2_000 if damage == "log shorter than to_lsn" else None

    def rebuild(**mode: int) -> int:
        return rebuild_from_log(wal_dir, db_dir / "db.sqlite3", to_lsn=to_lsn, **mode)

    sequential = failure(lambda: rebuild(parallel_from=10**9))
    parallel = failure(lambda: rebuild(**PARALLEL))

    assert parallel == sequential
    if damage != "undecodable record":
        assert parallel[0] is WalCorruption
    assert files_and_digest(db_dir) == before
    assert no_child_processes()


class Interrupting(Recorded):
    """A progress bar whose watcher presses Ctrl-C once some records are done."""

    def advance(self, amount: int) -> None:
        super().advance(amount)
        raise KeyboardInterrupt


def test_an_interrupted_rebuild_stops_its_workers_and_leaves_the_old_database(tmp_path: Path):
    wal_dir = tmp_path / "wal"
    db_dir = tmp_path / "db"
    db_dir.mkdir()
    write_varied_log(wal_dir)
    rebuild_from_log(wal_dir, db_dir / "db.sqlite3", to_lsn=50)
    before = files_and_digest(db_dir)
    progress = Interrupting()
    with pytest.raises(KeyboardInterrupt):
        rebuild_from_log(wal_dir, db_dir / "db.sqlite3", progress=progress, **PARALLEL)
    assert progress.finished == 1
    assert files_and_digest(db_dir) == before
    assert no_child_processes()
