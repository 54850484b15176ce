"""Campaigns 1, 2, 6 and 7: kill -9 of the running service, power loss under the log, the whole data
directory lost (restore from S3), and the backup target down for a while. Each prints what it counted."""

from __future__ import annotations

from pathlib import Path

from recovery.faultlab import kill9, powerloss, s3


def test_campaign_1_kill_9_at_random_moments_never_loses_an_acknowledged_join(tmp_path: Path) -> None:
    tally = kill9.run(tmp_path, rounds=50)
    print(tally.line())
    assert tally.crashes == 50 and tally.notes["killed_during_joins"] >= 40
    assert tally.acknowledged >= 300, "the kills should fall while joins are being acknowledged"
    assert tally.lost == 0 and tally.duplicated == 0 and tally.mismatches == 0
    assert tally.checks >= 44


def test_campaign_2_power_loss_at_many_crash_points_never_loses_an_acknowledged_join(tmp_path: Path) -> None:
    tally = powerloss.run(tmp_path, rounds=60)
    print(tally.line())
    assert tally.crashes == 60 and tally.acknowledged >= 500
    assert set(tally.notes["policies"]) == {"torn", "lose", "truncate", "keep", "garble"}
    assert tally.lost == 0 and tally.duplicated == 0 and tally.mismatches == 0


def test_campaigns_6_and_7_backup_target_down_then_data_directory_lost(tmp_path: Path) -> None:
    tally = s3.run(tmp_path, joins=240, outage=True)
    print(tally.line())
    notes = tally.notes
    assert notes["backlog_during_outage"] > 0 and notes["drained"]  # visible, then drained
    assert notes["restored_from_backup"] == tally.acknowledged - notes["not_shipped"] > 0
    assert tally.lost == 0 and tally.duplicated == 0
