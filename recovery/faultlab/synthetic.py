"""A big, realistic log written fast: joins, leaves and periodic invite snapshots over five guilds.

Encoding a record through cattrs costs ~50 µs, so a million of them would take most of a minute; these
records are built once as objects (so a database can be built from them without decoding) and their JSON
is formatted directly, in the converter's own shape (`service.convert.decode` reads it back; the
`tests/recovery/test_synthetic.py` checks that it round-trips). Segments are written through the WAL's own
`SegmentAppender`, in big group commits.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from service import convert
from service.records import (
    AttributionKind,
    InviteSnapshotTaken,
    InviteState,
    JoinRecorded,
    MemberLeft,
    Record,
)
from wal.appender import SegmentAppender
from wal.fs import OsFileSystem
from wal.recover import open_log

GUILDS = tuple((str(811111111111111111 + g * 11111111111111111), f"Guild {g}") for g in range(5))
SNAPSHOT_EVERY = 2_000  # joins of a guild between two logged invite snapshots
_JOIN_TYPE = convert.encode(
    JoinRecorded(datetime(2025, 1, 1, tzinfo=UTC), "1", "g", "1", "u", "u", AttributionKind.EXACT)
)[0]
_LEAVE_TYPE = convert.encode(MemberLeft(datetime(2025, 1, 1, tzinfo=UTC), "1", "1"))[0]


def _join_json(r: JoinRecorded) -> bytes:
    assert r.decided_at is not None and r.account_created_at is not None and r.staff_id is not None
    return (
        f'{{"timestamp":"{r.timestamp.isoformat()}","guild_id":"{r.guild_id}","guild_name":"{r.guild_name}",'
        f'"user_id":"{r.user_id}","username":"{r.username}","display_name":"{r.display_name}",'
        f'"kind":"{r.kind.value}","invite_code":"{r.invite_code}","staff_id":"{r.staff_id}",'
        f'"staff_username":"{r.staff_username}","uses_before":{r.uses_before},"uses_after":{r.uses_after},'
        f'"candidates":[],"flags":[],"account_created_at":"{r.account_created_at.isoformat()}",'
        f'"decided_at":"{r.decided_at.isoformat()}"}}'
    ).encode()


def synthetic_records(n: int, seed: int = 20261124) -> Iterator[tuple[Record, tuple[int, bytes]]]:
    """N records in log order with their (type, payload); reproducible for a seed."""
    rng = random.Random(seed)
    codes = {gid: [(f"c{g}s{s}k{k}", str(900 + s), f"staff{s}") for s in range(12) for k in range(3)]
             for g, (gid, _name) in enumerate(GUILDS)}  # fmt: skip
    uses = {gid: dict.fromkeys((c for c, _, _ in codes[gid]), 0) for gid, _ in GUILDS}
    since_snapshot = dict.fromkeys(uses, 0)
    recent: list[tuple[str, str]] = []
    at = datetime(2025, 1, 1, tzinfo=UTC)
    for i in range(n):
        at += timedelta(microseconds=rng.randint(1, 20_000_000))
        g = rng.randrange(len(GUILDS)) if rng.random() < 0.4 else 0
        gid, gname = GUILDS[g]
        if since_snapshot[gid] >= SNAPSHOT_EVERY:
            since_snapshot[gid] = 0
            snap = InviteSnapshotTaken(
                at,
                gid,
                gname,
                tuple(InviteState(c, uses[gid][c], 0, sid, sname) for c, sid, sname in codes[gid]),
            )
            yield snap, convert.encode(snap)
            continue
        if i % 50 == 49 and recent:
            lgid, user = recent.pop(rng.randrange(len(recent)))
            leave = MemberLeft(at, lgid, user)
            yield (
                leave,
                (
                    _LEAVE_TYPE,
                    f'{{"timestamp":"{at.isoformat()}","guild_id":"{lgid}","user_id":"{user}"}}'.encode(),
                ),
            )
            continue
        code, staff_id, staff_name = rng.choice(codes[gid])
        before = uses[gid][code]
        uses[gid][code] = before + 1
        since_snapshot[gid] += 1
        number = rng.randrange(max(1, n * 7 // 8))
        user = str(1_000_000_000_000_000_000 + number * 7919)
        join = JoinRecorded(
            timestamp=at,
            guild_id=gid,
            guild_name=gname,
            user_id=user,
            username=f"user_{number}",
            display_name=f"User {number} | Trader",
            kind=AttributionKind.EXACT,
            invite_code=code,
            staff_id=staff_id,
            staff_username=staff_name,
            uses_before=before,
            uses_after=before + 1,
            account_created_at=at - timedelta(days=400),
            decided_at=at + timedelta(milliseconds=300),
        )
        if len(recent) < 10_000:
            recent.append((gid, user))
        yield join, (_JOIN_TYPE, _join_json(join))


def write_log(
    wal_dir: Path,
    items: Iterator[tuple[int, bytes]],
    *,
    segment_bytes: int = 32 * 2**20,
    batch: int = 20_000,
) -> int:
    """Append (type, payload) items to the log at `wal_dir` in group commits of `batch`; the last LSN."""
    report = open_log(wal_dir)
    appender = SegmentAppender(wal_dir, OsFileSystem(), segment_bytes=segment_bytes, preallocate=False)
    appender.open(report)
    lsn = report.last_lsn + 1
    try:
        chunk: list[tuple[int, bytes]] = []
        for item in items:
            chunk.append(item)
            if len(chunk) >= batch:
                lsn = _commit(appender, lsn, chunk)
                chunk = []
        if chunk:
            lsn = _commit(appender, lsn, chunk)
    finally:
        appender.close()
    return lsn - 1


def _commit(appender: SegmentAppender, lsn: int, chunk: list[tuple[int, bytes]]) -> int:
    result = appender.commit(lsn, chunk)
    if result.error is not None:
        raise result.error
    return result.durable_lsn + 1
