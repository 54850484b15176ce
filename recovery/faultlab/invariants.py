"""The invariant every campaign checks after every recovery, and what a campaign counts.

"Never lose an acknowledged join": every join acknowledged before a crash (its append returned, after
fdatasync) is in the database exactly once, at the LSN it was acknowledged with; no user's join is
recorded twice; and the database equals the projection of the log.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from recovery.replay import apply_tail
from service import projection
from service.config import Config
from wal import list_segments


@attrs.define
class Tally:
    """What a campaign counted; `lost` and `duplicated` must stay 0."""

    name: str
    crashes: int = 0
    acknowledged: int = 0
    lost: int = 0
    duplicated: int = 0
    checks: int = 0  # recoveries whose result was checked
    mismatches: int = 0  # checks where the database differed from the log's projection
    recovery_ms: list[float] = attrs.Factory(list)
    notes: dict[str, Any] = attrs.Factory(dict)

    @property
    def recovery_p99_ms(self) -> float | None:
        if not self.recovery_ms:
            return None
        ordered = sorted(self.recovery_ms)
        return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]

    def summary(self) -> dict[str, Any]:
        p99 = self.recovery_p99_ms
        return {
            "name": self.name,
            "crashes": self.crashes,
            "acknowledged": self.acknowledged,
            "lost": self.lost,
            "duplicated": self.duplicated,
            "checks": self.checks,
            "mismatches": self.mismatches,
            "recovery_p99_ms": None if p99 is None else round(p99, 1),
            **self.notes,
        }

    def line(self) -> str:
        s = self.summary()
        return (
            f"{self.name}: {s['crashes']} crashes, {s['acknowledged']} acknowledged joins, {s['lost']} lost, "
            f"{s['duplicated']} duplicated, {s['checks']} recoveries checked ({s['mismatches']} mismatches), "
            f"recovery p99 {s['recovery_p99_ms']} ms" + "".join(f", {k} {v}" for k, v in self.notes.items())
        )


@attrs.frozen
class Check:
    lost: tuple[str, ...]
    duplicated: tuple[str, ...]
    projection_equal: bool


class Projection:
    """The log's projection kept beside the live database, built only from the log (incrementally: each
    check applies what the log gained since the last one)."""

    def __init__(self, scratch: Path) -> None:
        scratch.unlink(missing_ok=True)
        self._conn = projection.open_database(scratch)

    def digest(self, wal_dir: Path) -> str:
        segments = list_segments(wal_dir)
        end = 0
        if segments:
            end = segments[-1].last_lsn if segments[-1].last_lsn is not None else segments[-1].first_lsn - 1
        apply_tail(self._conn, wal_dir, end)
        return projection.projection_digest(self._conn)

    def close(self) -> None:
        self._conn.close()


def check(config: Config, acked: Mapping[str, int], expected: Projection | None) -> Check:
    """The invariant on a recovered data directory (the service must not be running on it)."""
    conn = projection.open_database(config.db_path, readonly=True)
    try:
        rows: dict[str, list[int]] = {}
        for user, lsn in conn.execute(
            "SELECT CAST(user_id AS TEXT), lsn FROM joins WHERE user_id IS NOT NULL"
        ):
            rows.setdefault(user, []).append(lsn)
        live = projection.projection_digest(conn) if expected is not None else ""
    finally:
        conn.close()
    lost = tuple(sorted(user for user, lsn in acked.items() if lsn not in rows.get(user, ())))
    duplicated = tuple(sorted(user for user, lsns in rows.items() if len(lsns) > 1))
    equal = expected is None or expected.digest(config.wal_dir) == live
    return Check(lost, duplicated, equal)


def record(tally: Tally, result: Check) -> None:
    tally.checks += 1
    tally.lost = max(tally.lost, len(result.lost))  # cumulative sets: the largest is the count
    tally.duplicated = max(tally.duplicated, len(result.duplicated))
    tally.mismatches += 0 if result.projection_equal else 1
