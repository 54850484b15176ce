"""A small log of every kind of record (joins, rejoins, leaves, snapshots, staff profiles, erasures,
settlements) over three guilds, built with a seed, and written to a real log through the WAL's own
appender."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

from recovery.faultlab.synthetic import write_log
from service import convert
from service.records import (
    AttributionKind,
    InviteSnapshotTaken,
    InviteState,
    JoinFlag,
    JoinRecorded,
    JoinSettled,
    MemberLeft,
    Record,
    StaffIbRemoved,
    StaffIbSet,
    UserErased,
)

SNAPSHOT_GUILD, PLAIN_GUILD, STAFF_ONLY_GUILD = "1001", "1002", "1003"
STAFF = ("501", "502", "503")


def varied_records(n: int, seed: int) -> list[Record]:
    """N records in log order. The first guild has snapshots and erasures; the second neither; the third
    only staff profiles. Erasures target members, never staff (see recovery.restored on staff names)."""
    rng = random.Random(seed)
    at = datetime(2026, 3, 1, tzinfo=UTC)
    out: list[Record] = []
    uses = {(g, f"{g}-{s}"): 0 for g in (SNAPSHOT_GUILD, PLAIN_GUILD) for s in STAFF}
    present: dict[str, set[str]] = {SNAPSHOT_GUILD: set(), PLAIN_GUILD: set()}
    users = [str(9000 + u) for u in range(max(8, n // 3))]
    ambiguous: list[tuple[int, JoinRecorded]] = []  # (LSN, join): the log starts at LSN 1
    out.append(StaffIbSet(at, STAFF_ONLY_GUILD, "501", "staffer", "https://b.example/1", "C1", "1"))
    while len(out) < n:
        at += timedelta(seconds=rng.randint(1, 400), microseconds=rng.randint(0, 999_999))
        guild = SNAPSHOT_GUILD if rng.random() < 0.6 else PLAIN_GUILD
        roll = rng.random()
        if roll < 0.62:
            user = rng.choice(users)
            staff = rng.choice(STAFF)
            code = f"{guild}-{staff}"
            kind = rng.choice(
                [AttributionKind.EXACT] * 4 + [AttributionKind.AMBIGUOUS, AttributionKind.VANITY]
            )
            before = uses[(guild, code)]
            uses[(guild, code)] = before + 1
            credited = kind is AttributionKind.EXACT
            out.append(
                JoinRecorded(
                    timestamp=at,
                    guild_id=guild,
                    guild_name=f"Guild {guild}" if rng.random() < 0.9 else f"Renamed {guild}",
                    user_id=user,
                    username=f"user{user}",
                    display_name=f"User {user} 🚀",
                    kind=kind,
                    invite_code=code if credited else None,
                    staff_id=staff if credited else None,
                    staff_username=f"staff{staff}" if credited else None,
                    uses_before=before if credited else None,
                    uses_after=before + 1 if credited else None,
                    candidates=(code, f"{guild}-501") if kind is AttributionKind.AMBIGUOUS else (),
                    flags=(JoinFlag.REJOIN,) if user in present[guild] or rng.random() < 0.1 else (),
                    account_created_at=at - timedelta(days=rng.randint(1, 900)),
                    decided_at=at + timedelta(milliseconds=rng.randint(10, 3000)),
                )
            )
            present[guild].add(user)
            if kind is AttributionKind.AMBIGUOUS:
                ambiguous.append((len(out), out[-1]))  # type: ignore[arg-type]
        elif roll < 0.75 and present[guild]:
            user = rng.choice(sorted(present[guild]))
            present[guild].discard(user)
            out.append(MemberLeft(at, guild, user))
        elif roll < 0.84 and guild == SNAPSHOT_GUILD:
            invites = tuple(
                InviteState(code, count, 0, code.split("-")[1], f"staff{code.split('-')[1]}")
                for (g, code), count in sorted(uses.items())
                if g == guild
            )
            out.append(InviteSnapshotTaken(at, guild, f"Guild {guild}", invites, "vanity", rng.randint(0, 9)))
        elif roll < 0.9 and guild == SNAPSHOT_GUILD:
            user = rng.choice(users)
            present[guild].discard(user)
            out.append(UserErased(at, guild, user, "1"))
        elif roll < 0.93 and ambiguous:
            lsn, settled = rng.choice(ambiguous)  # settled again now and then: a correction
            code = rng.choice(settled.candidates)
            staff = code.split("-")[1]
            out.append(
                JoinSettled(
                    at, settled.guild_id, lsn, settled.user_id, code, staff, f"staff{staff}", "1", "owner",
                    "the member showed the invite link",
                )
            )  # fmt: skip
        elif roll < 0.96:
            staff = rng.choice(STAFF)
            out.append(StaffIbSet(at, guild, staff, f"staff{staff}", f"https://b.example/{staff}", "X", "1"))
        else:
            out.append(StaffIbRemoved(at, guild, rng.choice(STAFF), "1"))
    return out


def write_records(wal_dir: Path, records: list[Record], *, segment_bytes: int = 4096, batch: int = 7) -> int:
    """Write records as a real log (several segments, several group commits); returns the last LSN."""
    wal_dir.mkdir(parents=True, exist_ok=True)
    return write_log(
        wal_dir, iter([convert.encode(r) for r in records]), segment_bytes=segment_bytes, batch=batch
    )
