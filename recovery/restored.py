"""The `GuildRestored` events of a start-up, read from the projection instead of decoding the whole log.

`service.attribution.reconcile.restore_events` folds every record of the log; decoding a record costs about
25 µs, so a million-record log would take half a minute before the bot could connect. Once recovery has
applied the whole log, the projection holds the same facts, indexed:

| field | log fold | here |
| --- | --- | --- |
| snapshot | the last InviteSnapshotTaken | `invite_snapshots` + `snapshot_invites` (the latest per guild) |
| recent_joins | joins after it, and those within `restore_margin` before it | `joins` by LSN and time |
| known_user_ids | users with a join, forgotten by an erasure | users with a join row whose user_id survives |
| present | users whose last record is a join, with its time | the same, from `joins_by_user` and `leaves` |
| guild_name | the last non-empty name of a join or snapshot | the same, by LSN |
| last_seen | the latest time of a join (or its decision), leave or snapshot | see below |

Erasure: a `UserErased` NULLs the user_id of the user's earlier join rows and deletes their leaves, which is
exactly "forgotten" in the fold, and a later rejoin appears again in both.

Where the two can differ, nothing the attribution core does changes: invites come in code order rather than
fetch order (the core keys them by code); an erased inviter's name reads `[erased]` (the fold keeps the
name the log had); and `last_seen` leaves out the leaves of erased users and the decision times of joins
older than the snapshot's margin. The core only uses `min(last_seen, snapshot time)`, and `last_seen` here
is never earlier than the snapshot, so the result is the same; without a snapshot every surviving join is
in `recent_joins` and counted. `tests/recovery/test_restored.py` checks the two against each other.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import apsw

from service.attribution.config import AttributionConfig as CoreConfig
from service.events import GuildRestored
from service.projection.frames import no_cyclic_gc
from service.projection.ids import id_param
from service.projection.schema import EPOCH
from service.records import AttributionKind, InviteSnapshotTaken, InviteState, JoinFlag, JoinRecorded

# A settled join (`settled_lsn`) holds the settlement's invite and staff member; the bot's own verdict,
# which is what the core restores from, credited nobody there (settlements only touch such kinds).
_JOIN_COLUMNS = (
    "timestamp_us, guild_name, CAST(user_id AS TEXT), username, display_name, kind, "
    "iif(settled_lsn IS NULL, invite_code, NULL), iif(settled_lsn IS NULL, CAST(staff_id AS TEXT), NULL), "
    "iif(settled_lsn IS NULL, staff_username, NULL), uses_before, uses_after, candidates, flags, "
    "account_created_us, decided_us, lsn"
)
_US = timedelta(microseconds=1)


def _present(users: list[Any], last_leave: dict[str, int]) -> dict[str, float]:
    """Members whose last record is a join: (user, time, last join LSN) rows newer than their last leave,
    as user id -> join time in POSIX seconds (exactly what `datetime.timestamp()` of the record's time
    gives: the same integer of microseconds divided by 10**6)."""
    if not last_leave:
        return {user: ts / 1_000_000 for user, ts, _lsn in users}
    left = last_leave.get
    return {user: ts / 1_000_000 for user, ts, lsn in users if lsn > left(user, 0)}


def _time(us: int | None) -> datetime | None:
    return None if us is None else EPOCH + us * _US


def _guild_ids(conn: apsw.Connection) -> list[str]:
    found: set[str] = set()
    for sql in (
        "SELECT DISTINCT guild_id FROM join_counts",
        "SELECT guild_id FROM invite_snapshots",
        "SELECT DISTINCT CAST(guild_id AS TEXT) FROM leaves",  # ids as written (service.projection.ids)
        "SELECT DISTINCT guild_id FROM staff_ib",
        "SELECT DISTINCT guild_id FROM erasures",
    ):
        found.update(row[0] for row in conn.execute(sql))
    return sorted(found)


def _snapshot(conn: apsw.Connection, guild_id: str) -> tuple[InviteSnapshotTaken, int] | None:
    row = conn.execute(
        "SELECT guild_name, taken_us, lsn, vanity_code, vanity_uses FROM invite_snapshots WHERE guild_id = ?",
        (guild_id,),
    ).fetchone()
    if row is None:
        return None
    name, taken_us, lsn, vanity_code, vanity_uses = row
    invites = tuple(
        InviteState(
            code, uses, max_uses, inviter_id, inviter_name, _time(expires), channel_id, _time(created)
        )
        for code, uses, max_uses, inviter_id, inviter_name, expires, channel_id, created in conn.execute(
            "SELECT code, uses, max_uses, inviter_id, inviter_name, expires_us, channel_id, created_us "
            "FROM snapshot_invites WHERE guild_id = ? ORDER BY code",
            (guild_id,),
        )
    )
    when = _time(taken_us)
    assert when is not None
    return InviteSnapshotTaken(when, guild_id, name, invites, vanity_code, vanity_uses), lsn


def _join(guild_id: str, row: Any) -> JoinRecorded:
    (ts, name, user, username, display, kind, code, staff, staff_name, before, after, cands, flags) = row[:13]
    when = _time(ts)
    assert when is not None
    return JoinRecorded(
        timestamp=when,
        guild_id=guild_id,
        guild_name=name,
        user_id=user,
        username=username,
        display_name=display,
        kind=AttributionKind(kind),
        invite_code=code,
        staff_id=staff,
        staff_username=staff_name,
        uses_before=before,
        uses_after=after,
        candidates=tuple(json.loads(cands)) if cands != "[]" else (),
        flags=tuple(JoinFlag(f) for f in json.loads(flags)) if flags != "[]" else (),
        account_created_at=_time(row[13]),
        decided_at=_time(row[14]),
    )


def _recent_joins(
    conn: apsw.Connection, guild_id: str, snapshot: tuple[InviteSnapshotTaken, int] | None, margin_us: int
) -> list[JoinRecorded]:
    if snapshot is None:
        sql = f"SELECT {_JOIN_COLUMNS} FROM joins WHERE guild_id = ? AND user_id IS NOT NULL ORDER BY lsn"
        return [_join(guild_id, row) for row in conn.execute(sql, (id_param(guild_id),))]
    record, snap_lsn = snapshot
    since = (record.timestamp - EPOCH) // _US - margin_us
    # Two index walks (LSN range, time range) rather than one OR that would scan the guild's joins.
    sql = (
        f"SELECT {_JOIN_COLUMNS} FROM joins WHERE lsn > ?2 AND guild_id = ?1 AND user_id IS NOT NULL "
        f"UNION SELECT {_JOIN_COLUMNS} FROM joins WHERE guild_id = ?1 AND timestamp_us >= ?3 "
        "AND user_id IS NOT NULL ORDER BY lsn"
    )
    return [_join(guild_id, row) for row in conn.execute(sql, (id_param(guild_id), snap_lsn, since))]


def _rows(conn: apsw.Connection, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
    return list(conn.execute(sql, args))


def _value(conn: apsw.Connection, sql: str, args: tuple[Any, ...]) -> Any:
    row: Any = conn.execute(sql, args).fetchone()
    return None if row is None else row[0]


def _guild_name(conn: apsw.Connection, guild_id: str, max_lsn: int | None, snapshot: Any) -> str:
    """The last non-empty guild name of a join or the snapshot, in log order."""
    name, name_lsn = "", 0
    if max_lsn is not None:
        name, name_lsn = _value(conn, "SELECT guild_name FROM joins WHERE lsn = ?", (max_lsn,)), max_lsn
        if not name:  # rare: the last join carried no name; look further back
            row = _rows(
                conn,
                "SELECT guild_name, lsn FROM joins WHERE guild_id = ? AND guild_name != '' "
                "ORDER BY lsn DESC LIMIT 1",
                (id_param(guild_id),),
            )
            name, name_lsn = row[0] if row else ("", 0)
    if snapshot is not None and snapshot[0].guild_name and snapshot[1] > name_lsn:
        return str(snapshot[0].guild_name)
    return str(name or "")


def _guild(conn: apsw.Connection, guild_id: str, margin_us: int) -> GuildRestored:
    snapshot = _snapshot(conn, guild_id)
    recent = _recent_joins(conn, guild_id, snapshot, margin_us)
    stored = id_param(guild_id)  # as joins and leaves hold it (service.projection.ids)
    # Each user's last join (the bare column takes its time from the row of max(lsn)), by a covering walk
    # of joins_by_user; erased join rows have no user_id and drop out, as erasure forgets in the fold.
    users = _rows(
        conn,
        "SELECT CAST(user_id AS TEXT), timestamp_us, max(lsn) FROM joins "
        "WHERE guild_id = ? AND user_id IS NOT NULL GROUP BY user_id",
        (stored,),
    )
    last_leave: dict[str, int] = dict(
        _rows(
            conn,
            "SELECT CAST(user_id AS TEXT), max(lsn) FROM leaves WHERE guild_id = ? GROUP BY user_id",
            (stored,),
        )
    )
    known = tuple(str(user) for user, _ts, _lsn in users)
    present = _present(users, last_leave)
    [(max_lsn, max_ts)] = _rows(
        conn, "SELECT max(lsn), max(timestamp_us) FROM joins WHERE guild_id = ?", (stored,)
    )
    seen: list[int | None] = [
        max_ts,
        _value(conn, "SELECT max(timestamp_us) FROM leaves WHERE guild_id = ?", (stored,)),
        # Erased joins keep their times; the fold saw them before the erasure.
        _value(conn, "SELECT max(decided_us) FROM joins WHERE guild_id = ? AND user_id IS NULL", (stored,)),
    ]
    seen += [(j.decided_at - EPOCH) // _US for j in recent if j.decided_at is not None]
    if snapshot is not None:
        seen.append((snapshot[0].timestamp - EPOCH) // _US)
    times = [us for us in seen if us is not None]
    return GuildRestored(
        guild_id=guild_id,
        guild_name=_guild_name(conn, guild_id, max_lsn, snapshot),
        snapshot=snapshot[0] if snapshot is not None else None,
        last_seen=_time(max(times)) if times else None,
        recent_joins=tuple(recent),
        known_user_ids=known,
        present_at=present,
    )


def restore_events_from_database(
    conn: apsw.Connection, config: CoreConfig | None = None
) -> list[GuildRestored]:
    """One `GuildRestored` per guild the projection knows, as `restore_events` would build from the log the
    projection was applied from (see the module docstring for where they may differ, harmlessly). Reads
    in one transaction, so the answer is one snapshot of the database."""
    margin_us = (config or CoreConfig()).restore_margin // _US
    # Building a million small objects would trigger the cyclic collector hundreds of times for nothing
    # (none of them form cycles); pausing it takes a third off the time.
    with no_cyclic_gc(), conn:
        events = [_guild(conn, guild_id, margin_us) for guild_id in _guild_ids(conn)]
    return events
