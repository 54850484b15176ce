"""`checkpoint` (alias `status`): where the log, the database and the backups stand. Read-only.

Works while the service runs: the log is read without repair (the active segment may be mid-write, and a
torn-looking tail is only reported), the database through a read-only connection, the backup progress from
the shipper's state file (`--remote` also reads each target's manifest), and the data directory's lock is
only probed, never taken.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import apsw
import attrs

from recovery.lock import holder
from recovery.startup import read_last_recovery
from service import convert, projection
from service.backup.state import load_state
from service.config import Config
from wal import SegmentStatus, WalError, iter_frames, list_segments


@attrs.frozen
class SegmentRow:
    name: str
    first_lsn: int
    last_lsn: int | None
    records: int
    size: int
    state: str  # sealed | active
    status: str  # unchecked (sealed, by name) | ok | torn_tail | corrupt


@attrs.frozen
class TargetRow:
    url: str
    shipped_lsn: int  # every sealed segment up to it is shipped and verified, by the state file
    active_shipped_lsn: int | None
    lag_records: int
    lag_seconds: float | None  # age of the oldest record not yet shipped
    last_success_at: datetime | None
    remote_last_lsn: int | None = None  # from the target's manifest (--remote)
    remote_error: str | None = None


@attrs.frozen
class Checkpoint:
    data_dir: Path
    running: str | None  # who holds the data directory, if anyone
    segments: tuple[SegmentRow, ...]
    durable_lsn: int  # the end of the log
    log_note: str | None
    applied_lsn: int | None
    database_note: str | None
    applied_lag_records: int | None
    applied_lag_seconds: float | None  # age of the oldest record not yet applied
    targets: tuple[TargetRow, ...]
    last_recovery: dict[str, Any] | None
    taken_at: datetime

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = convert.unstructure(self)
        data["data_dir"] = str(self.data_dir)
        return data


def _record_time(wal_dir: Path, lsn: int, durable: int) -> datetime | None:
    """The time of the record at `lsn`, if the log has it (for a lag in seconds)."""
    if lsn > durable:
        return None
    try:
        entry = next(iter_frames(wal_dir, lsn, to_lsn=lsn), None)
    except WalError:
        return None
    if entry is None:
        return None
    try:
        when = getattr(convert.decode(entry.record_type, entry.payload), "timestamp", None)
    except Exception:
        return None
    return when if isinstance(when, datetime) else None


def _age(now: datetime, when: datetime | None) -> float | None:
    return None if when is None else max(0.0, (now - when).total_seconds())


def _shipped(entries: Any) -> tuple[int, datetime | None]:
    """The highest LSN covered from 1 without a gap by shipped segments, and the latest shipping time."""
    shipped = 0
    latest: datetime | None = None
    for entry in sorted(entries, key=lambda e: e.first_lsn):
        latest = entry.shipped_at if latest is None else max(latest, entry.shipped_at)
        if entry.first_lsn == shipped + 1:
            shipped = entry.last_lsn
    return shipped, latest


def take_checkpoint(config: Config, *, remote: bool = False) -> Checkpoint:
    now = datetime.now(UTC)
    wal_dir = config.wal_dir
    segments = list_segments(wal_dir)  # names for sealed ones, a read-only scan of the active one
    rows = tuple(
        SegmentRow(
            s.name,
            s.first_lsn,
            s.last_lsn,
            s.record_count,
            s.size,
            "sealed" if s.sealed else "active",
            s.status.value,
        )
        for s in segments
    )
    owner = holder(config.data_dir)
    durable = 0
    log_note = None
    if segments:
        last = segments[-1]
        durable = last.last_lsn if last.last_lsn is not None else last.first_lsn - 1
        if last.status == SegmentStatus.TORN_TAIL and owner is not None:
            log_note = f"{last.name}: a write in progress at its end"  # the service is appending
        elif last.problem:
            log_note = f"{last.name}: {last.problem}"
    elif not wal_dir.is_dir():
        log_note = f"no log at {wal_dir}"

    applied: int | None = None
    db_note = None
    try:
        conn = projection.open_database(config.db_path, readonly=True)
        try:
            applied = projection.applied_lsn(conn)
        finally:
            conn.close()
    except FileNotFoundError:
        db_note = f"no database at {config.db_path} (the next start rebuilds it)"
    except (projection.ProjectionSchemaError, apsw.Error) as exc:
        db_note = f"database unusable (the next start rebuilds it): {exc}"

    applied_lag = None if applied is None else max(0, durable - applied)
    applied_age = None
    if applied is not None and applied < durable:
        applied_age = _age(now, _record_time(wal_dir, applied + 1, durable))

    state = load_state(config.backup_state_path)
    targets = []
    for url in config.backup_targets:
        saved = state.targets.get(url)
        entries = saved.segments if saved is not None else ()
        shipped, latest = _shipped(entries)
        active = saved.active if saved is not None else None
        if active is not None:
            latest = active.shipped_at if latest is None else max(latest, active.shipped_at)
        reach = max(shipped, active.last_lsn if active is not None and active.first_lsn <= shipped + 1 else 0)
        row = TargetRow(
            url=url,
            shipped_lsn=shipped,
            active_shipped_lsn=active.last_lsn if active is not None else None,
            lag_records=max(0, durable - reach),
            lag_seconds=_age(now, _record_time(wal_dir, reach + 1, durable)) if reach < durable else 0.0,
            last_success_at=latest,
        )
        if remote:
            row = _with_remote(row, config)
        targets.append(row)

    return Checkpoint(
        data_dir=config.data_dir,
        running=owner.describe() if owner is not None else None,
        segments=rows,
        durable_lsn=durable,
        log_note=log_note,
        applied_lsn=applied,
        database_note=db_note,
        applied_lag_records=applied_lag,
        applied_lag_seconds=applied_age,
        targets=tuple(targets),
        last_recovery=read_last_recovery(config.data_dir),
        taken_at=now,
    )


def _with_remote(row: TargetRow, config: Config) -> TargetRow:
    from service.backup.restore import remote_segments
    from service.backup.targets import open_target

    try:
        found = remote_segments(open_target(row.url, config.backup))
    except Exception as exc:  # an unreachable target is a finding here, not a failure of the command
        return attrs.evolve(row, remote_error=str(exc) or type(exc).__name__)
    reach = 0
    for first, group in itertools.groupby(found, key=lambda s: s.first_lsn):
        if first != reach + 1:
            break
        reach = max(s.last_lsn for s in group)
    return attrs.evolve(row, remote_last_lsn=reach)
