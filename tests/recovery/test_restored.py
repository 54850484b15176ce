"""The GuildRestored events read from the projection match those the log fold builds, for what the
attribution core uses (recovery.restored says where the two may differ, harmlessly)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from recovery.restored import restore_events_from_database
from service.attribution.config import AttributionConfig
from service.attribution.reconcile import restore_events
from service.events import GuildRestored
from service.projection import open_database, rebuild_database
from tests.recovery.records import PLAIN_GUILD, SNAPSHOT_GUILD, STAFF_ONLY_GUILD, varied_records


def normalized(event: GuildRestored) -> dict[str, Any]:
    snapshot = event.snapshot
    last_seen = event.last_seen
    if snapshot is not None and last_seen is not None:
        last_seen = min(last_seen, snapshot.timestamp)  # all the core uses (see recovery.restored)
    return {
        "name": event.guild_name,
        "snapshot": None
        if snapshot is None
        else (
            snapshot.timestamp,
            snapshot.guild_name,
            sorted(snapshot.invites, key=lambda i: i.code),
            snapshot.vanity_code,
            snapshot.vanity_uses,
        ),
        "last_seen": last_seen,
        "recent": event.recent_joins,
        "known": sorted(event.known_user_ids),
        # The log's fold gives RecordedMembers, recovery gives POSIX seconds: the core reads both alike.
        "present": sorted(
            [(m.user_id, m.joined_at.timestamp()) for m in event.present]
            + list((event.present_at or {}).items())
        ),
    }


@pytest.mark.parametrize("seed", range(6))
def test_events_from_the_database_match_the_log_fold(tmp_path: Path, seed: int) -> None:
    records = varied_records(400, seed)
    config = AttributionConfig()
    from_log = {e.guild_id: normalized(e) for e in restore_events(records, config)}
    db = tmp_path / "ledger.sqlite3"
    rebuild_database(db, enumerate(records, start=1))
    conn = open_database(db, readonly=True)
    try:
        from_db = {e.guild_id: normalized(e) for e in restore_events_from_database(conn, config)}
    finally:
        conn.close()
    assert set(from_db) == set(from_log) == {SNAPSHOT_GUILD, PLAIN_GUILD, STAFF_ONLY_GUILD}
    for guild in from_log:
        assert from_db[guild] == from_log[guild], guild
    # The cases that matter were exercised: a snapshot, erasures, members who left, rejoins.
    snap = from_log[SNAPSHOT_GUILD]
    assert snap["snapshot"] is not None and snap["recent"] and snap["present"]
    assert len(snap["known"]) > len(snap["present"])


def test_an_empty_database_restores_nothing(tmp_path: Path) -> None:
    conn = open_database(tmp_path / "empty.sqlite3")
    try:
        assert restore_events_from_database(conn) == []
    finally:
        conn.close()
