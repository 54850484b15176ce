"""`invite-ledger wal inspect` and `wal dump`, run through the real command line entry point."""

from __future__ import annotations

import csv
import io
import itertools
import json
import os
from datetime import UTC, datetime

import pytest

from service import convert
from service.cli import main
from service.records import AttributionKind, InviteSnapshotTaken, InviteState, JoinRecorded, MemberLeft
from tests.wal.helpers import entries, flip_byte, segment_files, truncate, write_log

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def join(i: int) -> JoinRecorded:
    return JoinRecorded(
        timestamp=NOW,
        guild_id="1",
        guild_name="PipVault",
        user_id=str(1000 + i),
        username=f"user{i}",
        display_name=f'User, "{i}"',  # a comma and quotes: CSV must quote them
        kind=AttributionKind.EXACT,
        invite_code="abc",
        staff_id="9",
        candidates=("abc", "def"),
    )


@pytest.fixture
def data_dir(tmp_path):
    records = [join(i) for i in range(6)] + [
        MemberLeft(timestamp=NOW, guild_id="1", user_id="1000"),
        InviteSnapshotTaken(
            timestamp=NOW, guild_id="1", guild_name="PipVault", invites=(InviteState(code="abc", uses=3),)
        ),
    ]
    items = [convert.encode(r) for r in records] + [(99, b"\xffnot json")]
    write_log(tmp_path / "wal", [items[:4], items[4:7], items[7:]], segment_bytes=1600)
    assert len(segment_files(tmp_path / "wal")) >= 2
    return tmp_path


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_inspect_json_lists_segments_with_ranges_sizes_state_and_checksums(data_dir, capsys):
    code, out, _ = run(capsys, "wal", "inspect", "--data-dir", str(data_dir), "--json")
    assert code == 0
    report = json.loads(out)
    assert report["status"] == "ok" and report["last_lsn"] == 9 and report["records"] == 9
    segments = report["segments"]
    assert [s["name"] for s in segments] == [p.name for p in segment_files(data_dir / "wal")]
    assert [s["state"] for s in segments] == ["sealed"] * (len(segments) - 1) + ["active"]
    assert {s["checksum"] for s in segments} == {"ok"}
    assert segments[0]["first_lsn"] == 1 and segments[-1]["last_lsn"] == 9
    for a, b in itertools.pairwise(segments):
        assert b["first_lsn"] == a["last_lsn"] + 1
    assert segments[-1]["size"] == 1600 and segments[-1]["used_bytes"] < 1600  # preallocated
    code, text, _ = run(capsys, "wal", "inspect", "--data-dir", str(data_dir))
    assert code == 0 and "last LSN 9" in text and "active" in text and "sealed" in text


def test_inspect_reports_a_torn_tail_and_corruption_without_touching_anything(data_dir, capsys):
    wal_dir = data_dir / "wal"
    last = entries(wal_dir)[-1]
    path = wal_dir / last.segment
    truncate(path, last.offset + 7)
    before, stamp = path.read_bytes(), os.stat(path).st_mtime_ns
    code, out, _ = run(capsys, "wal", "inspect", "--data-dir", str(data_dir), "--json")
    report = json.loads(out)
    assert code == 0 and report["status"] == "torn_tail" and report["last_lsn"] == 8
    assert report["torn_tail"] == {
        "segment": last.segment,
        "offset": last.offset,
        "bytes": 7,
        "reason": report["torn_tail"]["reason"],
    }
    code, _, err = run(capsys, "wal", "dump", "--data-dir", str(data_dir))
    assert code == 0 and "7 bytes of an unacknowledged write" in err
    assert path.read_bytes() == before and os.stat(path).st_mtime_ns == stamp  # read-only: nothing cut

    first = segment_files(wal_dir)[0]
    flip_byte(first, 40)
    code, out, _ = run(capsys, "wal", "inspect", "--data-dir", str(data_dir), "--json")
    report = json.loads(out)
    assert code == 1 and report["status"] == "corrupt"
    assert report["corruption"]["segment"] == first.name and report["corruption"]["lsn"] == 1
    assert "invite-ledger restore --from TARGET" in report["corruption"]["message"]
    assert report["segments"][0]["checksum"] == "corrupt"
    code, out, err = run(capsys, "wal", "dump", "--data-dir", str(data_dir))
    assert code == 1 and out == "" and "restore --from TARGET" in err


def test_dump_jsonl_decodes_each_record_and_shows_an_unknown_type_raw(data_dir, capsys):
    code, out, _ = run(capsys, "wal", "dump", "--data-dir", str(data_dir))
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["lsn"] for r in rows] == list(range(1, 10))
    names = {e.lsn: e.segment for e in entries(data_dir / "wal")}
    assert all(r["segment"] == names[r["lsn"]] for r in rows)
    assert [r["type"] for r in rows] == ["join"] * 6 + ["leave", "invite_snapshot", "unknown"]
    assert (
        rows[0]["user_id"] == "1000"
        and rows[0]["kind"] == "exact"
        and rows[0]["candidates"] == ["abc", "def"]
    )
    assert rows[0]["timestamp"] == "2026-11-24T12:00:00+00:00"
    assert rows[7]["invites"][0]["code"] == "abc"
    assert rows[8]["type_code"] == 99 and "payload_base64" in rows[8]
    code, out, _ = run(capsys, "wal", "dump", "--data-dir", str(data_dir), "--from-lsn", "5")
    assert [json.loads(line)["lsn"] for line in out.splitlines()] == [5, 6, 7, 8, 9]


def test_dump_csv_has_one_header_and_one_row_per_record(data_dir, capsys):
    code, out, _ = run(
        capsys, "wal", "dump", "--data-dir", str(data_dir), "--format", "csv", "--from-lsn", "2"
    )
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [int(r["lsn"]) for r in rows] == list(range(2, 10))
    assert rows[0]["type"] == "join" and rows[0]["display_name"] == 'User, "1"'
    assert json.loads(rows[0]["candidates"]) == ["abc", "def"]
    assert rows[5]["type"] == "leave" and rows[5]["user_id"] == "1000" and rows[5]["username"] == ""
    assert rows[7]["type"] == "unknown" and rows[7]["type_code"] == "99" and rows[7]["payload_base64"]


def test_a_missing_log_is_an_error_not_an_empty_success(tmp_path, capsys):
    code, _, err = run(capsys, "wal", "inspect", "--data-dir", str(tmp_path / "nope"))
    assert code == 1 and "no write-ahead log" in err
