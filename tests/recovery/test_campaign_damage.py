"""Campaign 3: a torn tail is cut at start; a flipped byte in a sealed segment stops the start with a
message naming it, and `restore` from the directory backup repairs it without losing anything else."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from recovery.faultlab.invariants import Projection, check
from recovery.startup import StartupRefused, recover
from service.cli import main
from tests.recovery.support import join_stream, make_config
from wal import list_segments


def test_torn_tail_then_flipped_byte_then_restore_from_the_directory_backup(tmp_path: Path, capsys) -> None:
    backups = tmp_path / "backups"
    config = make_config(
        tmp_path / "data",
        INVITE_LEDGER_BACKUP_TARGETS=f"file://{backups}",
        INVITE_LEDGER_WAL_SEGMENT_BYTES="4096",
        INVITE_LEDGER_BACKUP_INTERVAL_S="0.1",
    )
    acked, _ = anyio.run(lambda: join_stream(config, 150, until_shipped=True))
    assert len(acked) == 150
    segments = list_segments(config.wal_dir)
    assert len(segments) >= 5

    # A torn tail: the last write cut short. The start cuts it and says so.
    active = segments[-1]
    with open(active.path, "r+b") as f:
        f.seek(active.valid_size)  # where the next write would have gone (the rest is preallocated zeros)
        f.write(b"\x90\x01\x00\x00" + b"\x7f" * 50)
    report = recover(config, progress=False)
    print(report.line)
    assert report.torn_bytes_cut >= 54 and report.torn_segment == active.name and "torn tail" in report.line
    assert report.last_lsn == active.last_lsn

    # A flipped byte in a sealed, shipped segment: refused, naming segment, offset, LSN and the command.
    victim = segments[2]
    raw = bytearray(victim.path.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    victim.path.write_bytes(bytes(raw))
    with pytest.raises(StartupRefused) as refused:
        recover(config, progress=False)
    print(refused.value)
    assert refused.value.segment == victim.name
    assert f"restore --from file://{backups}" in refused.value.restore_command

    # The restore the message names: refused without --force, then done; the old log is kept aside.
    argv = ["restore", "--from", f"file://{backups}", "--data-dir", str(config.data_dir)]
    assert main(argv) == 1
    assert "--force" in capsys.readouterr().err
    assert main([*argv, "--force"]) == 0
    line = capsys.readouterr().out
    print(line)
    assert "kept" in line and "local records beyond it" in line  # the unshipped active segment survives
    assert list(config.data_dir.glob("wal.replaced-*"))

    report = recover(config, progress=False)
    print(report.line)
    expected = Projection(tmp_path / "expected.sqlite3")
    try:
        result = check(config, acked, expected)
    finally:
        expected.close()
    assert result.lost == () and result.duplicated == () and result.projection_equal
    print(f"damage: 1 torn tail cut, 1 flipped byte refused and restored, {len(acked)} joins, 0 lost")
