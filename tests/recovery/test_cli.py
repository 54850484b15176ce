"""The operator's commands on real data directories: checkpoint, rebuild, verify, restore, export."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from recovery.replay import database_digest
from recovery.startup import recover
from service.backup.shipper import BackupShipper
from service.cli import main
from service.projection import open_database
from tests.recovery.records import varied_records, write_records
from tests.recovery.support import make_config
from wal import list_segments

REPO = Path(__file__).resolve().parents[2]


async def _ship(config) -> None:
    shipper = BackupShipper.from_config(config)
    sealed = [s for s in list_segments(config.wal_dir) if s.sealed][-1].last_lsn
    async with anyio.create_task_group() as tg:
        await tg.start(shipper.run)
        with anyio.fail_after(20):
            while any(t.shipped_lsn < sealed for t in shipper.status().values()):
                await anyio.sleep(0.02)
        tg.cancel_scope.cancel()


@pytest.fixture
def shipped(tmp_path: Path):
    """A recovered data directory (300 records, many segments) whose sealed segments are in a directory
    backup; returns (config, backup URL)."""
    backups = tmp_path / "backups"
    config = make_config(tmp_path / "data", INVITE_LEDGER_BACKUP_TARGETS=f"file://{backups}")
    write_records(config.wal_dir, varied_records(300, seed=5))
    recover(config, progress=False)
    anyio.run(_ship, config)
    return config, f"file://{backups}"


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _env_args(config) -> list[str]:
    return ["--data-dir", str(config.data_dir)]


@pytest.fixture(autouse=True)
def _targets_from_env(monkeypatch, shipped) -> None:
    _, url = shipped
    monkeypatch.setenv("INVITE_LEDGER_BACKUP_TARGETS", url)


def test_checkpoint_shows_segments_lsns_lags_backups_and_the_last_recovery(capsys, shipped) -> None:
    config, url = shipped
    code, out, _ = run_cli(capsys, "checkpoint", *_env_args(config), "--json")
    assert code == 0
    found = json.loads(out)
    assert found["durable_lsn"] == 300 and found["applied_lsn"] == 300 and found["applied_lag_records"] == 0
    assert len(found["segments"]) > 10 and found["segments"][-1]["state"] == "active"
    [target] = found["targets"]
    last_sealed = found["segments"][-2]["last_lsn"]
    assert target["url"] == url and target["shipped_lsn"] == last_sealed
    assert target["lag_records"] == 300 - last_sealed and target["last_success_at"]
    assert found["last_recovery"]["ok"] is True and found["running"] is None
    code, out, _ = run_cli(capsys, "status", *_env_args(config))
    assert code == 0 and "applied (database)" in out and "last recovery" in out and "not running" in out


def test_checkpoint_works_while_the_service_runs_but_rebuild_and_restore_refuse(capsys, shipped) -> None:
    config, url = shipped
    code = (
        "from recovery.lock import hold_data_dir; import time; "
        f"hold_data_dir({str(config.data_dir)!r}, 'service'); print('held', flush=True); time.sleep(30)"
    )
    child = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == b"held"
        status, out, _ = run_cli(capsys, "checkpoint", *_env_args(config), "--json")
        assert status == 0 and f"pid {child.pid}" in json.loads(out)["running"]
        status, _, err = run_cli(capsys, "rebuild", *_env_args(config))
        assert status == 1 and f"pid {child.pid}" in err and "Stop the service first" in err
        status, _, err = run_cli(capsys, "restore", "--from", url, "--force", *_env_args(config))
        assert status == 1 and "in use by service" in err
    finally:
        child.kill()
        child.wait(timeout=10)


def test_rebuild_to_a_point_in_time_then_start_applies_the_rest(capsys, shipped) -> None:
    config, _ = shipped
    before = database_digest(config.db_path)
    code, out, _ = run_cli(capsys, "rebuild", *_env_args(config), "--to-lsn", "120")
    assert code == 0 and "as of LSN 120" in out
    assert database_digest(config.db_path)[0] == 120
    assert run_cli(capsys, "rebuild", *_env_args(config), "--to-lsn", "999")[0] == 1
    report = recover(config, progress=False)
    assert report.applied_records == 180 and database_digest(config.db_path) == before
    code, out, _ = run_cli(capsys, "rebuild", *_env_args(config), "--json")
    assert code == 0 and json.loads(out)["applied_lsn"] == 300 and database_digest(config.db_path) == before


def test_verify_is_quiet_when_all_is_well_and_names_every_problem(capsys, shipped, tmp_path: Path) -> None:
    config, url = shipped
    code, out, _ = run_cli(capsys, "verify", *_env_args(config))
    assert code == 0 and "no problem found" in out and "equal to the log's projection at LSN 300" in out

    conn = open_database(config.db_path)
    conn.execute("UPDATE joins SET username = 'mallory' WHERE lsn = (SELECT min(lsn) FROM joins)")
    conn.execute("DELETE FROM leaves WHERE lsn = (SELECT max(lsn) FROM leaves)")
    conn.close()
    backups = Path(url.removeprefix("file://")) / "segments"
    shipped_files = sorted(backups.glob("*.wal"))
    shipped_files[3].unlink()
    shipped_files[4].with_name(shipped_files[4].name + ".sha256").write_text("0" * 64 + "  x\n")
    code, out, _ = run_cli(capsys, "verify", *_env_args(config), "--json")
    report = json.loads(out)
    assert code == 1 and not report["ok"]
    tables = {t["table"]: t for t in report["tables"]}
    assert tables["joins"]["different"] == 1 and tables["joins"]["examples"][0]["database"][5] == "mallory"
    assert tables["leaves"]["missing"] == 1
    [target] = report["targets"]
    assert target["missing"] == [shipped_files[3].name.join(["segments/", ""])]
    assert any("different" in p for p in report["problems"])

    segment = sorted(config.wal_dir.glob("*.wal"))[5]
    raw = bytearray(segment.read_bytes())
    raw[40] ^= 0x08
    segment.write_bytes(bytes(raw))
    code, out, _ = run_cli(capsys, "verify", *_env_args(config), "--no-backups")
    assert code == 1 and segment.name in out


def test_restore_refuses_a_gap_naming_the_missing_range_and_keeps_the_log(capsys, shipped, tmp_path) -> None:
    _, url = shipped
    backups = Path(url.removeprefix("file://"))
    gone = sorted((backups / "segments").glob("*.wal"))[6]
    gone.unlink()
    gone.with_name(gone.name + ".sha256").unlink()
    manifest = json.loads((backups / "manifest.json").read_text())
    manifest["segments"] = [s for s in manifest["segments"] if s["name"] != f"segments/{gone.name}"]
    (backups / "manifest.json").write_text(json.dumps(manifest))
    first, last = (int(x) for x in gone.stem.split("-"))
    fresh = tmp_path / "fresh"
    code, _, err = run_cli(capsys, "restore", "--from", url, "--data-dir", str(fresh))
    assert code == 1 and f"missing LSNs {first}-{last}" in err
    assert not (fresh / "wal").exists()


def test_restore_on_an_empty_machine_and_to_a_point_in_time(capsys, shipped, tmp_path) -> None:
    _, url = shipped
    fresh = tmp_path / "fresh"
    code, out, _ = run_cli(capsys, "restore", "--from", url, "--data-dir", str(fresh), "--to-lsn", "100")
    assert code == 0 and "database rebuilt to LSN 100" in out and "next start applies" in out
    restored = make_config(fresh)
    assert database_digest(restored.db_path)[0] == 100
    report = recover(restored, progress=False)
    assert report.applied_lsn == report.last_lsn >= 100
    # Again over it: refused without --force; with it, the old log is moved aside, never deleted.
    assert run_cli(capsys, "restore", "--from", url, "--data-dir", str(fresh))[0] == 1
    code, out, _ = run_cli(capsys, "restore", "--from", url, "--data-dir", str(fresh), "--force", "--json")
    assert code == 0 and json.loads(out)["old_log"] and list(fresh.glob("wal.replaced-*/*.wal"))
    shutil.rmtree(fresh)


def test_export_writes_csv_and_jsonl(capsys, shipped, tmp_path: Path) -> None:
    config, _ = shipped
    out_file = tmp_path / "joins.csv"
    code, _, err = run_cli(capsys, "export", *_env_args(config), "--out", str(out_file), "--guild", "1001")
    assert code == 0 and "exported" in err
    assert out_file.read_text(encoding="utf-8-sig").splitlines()[0].startswith("timestamp")
    code, out, _ = run_cli(capsys, "export", *_env_args(config), "--format", "jsonl", "--since", "2026-03-01")
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and rows and all("user_id" in row for row in rows)


def test_an_interrupted_rebuild_leaves_the_database_as_it_was(tmp_path: Path) -> None:
    import signal
    import time

    from recovery.faultlab.synthetic import synthetic_records, write_log

    config = make_config(tmp_path / "big")
    write_log(config.wal_dir, (item for _, item in synthetic_records(20_000, seed=2)), segment_bytes=1 << 20)
    recover(config, progress=False)
    before = database_digest(config.db_path)
    building = config.db_path.with_name(config.db_path.name + ".rebuilding")
    command = [sys.executable, "-m", "service.cli", "rebuild", "--data-dir", str(config.data_dir)]
    child = subprocess.Popen(command, cwd=REPO, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while not building.exists() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        assert child.poll() is None, "the rebuild finished before it could be interrupted"
        child.send_signal(signal.SIGINT)  # Ctrl-C
        _, err = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == 130 and b"nothing was left half-done" in err
    assert database_digest(config.db_path) == before
    assert not building.exists()
