"""Automatic recovery on start, before the bot connects to Discord: `recover(config) -> StartupReport`.

1. Open the log, repairing only a torn tail (WAL rule 5). Damage anywhere else stops the start with
   `StartupRefused`, which names the segment, byte offset and LSN and the `restore` command to run.
2. Look at the database. Missing, unreadable or foreign, of another schema version, or ahead of the log
   (it holds records the log does not: the log was restored from an older backup): rebuild it from the
   log through the fast path. A file that is not missing is set aside (renamed), never deleted.
3. Apply the log's tail that the database has not applied yet, in transactions that each advance
   `applied_lsn` (WAL rule 7), so an interrupted recovery simply resumes next time.
4. Read the `GuildRestored` events the attribution actor needs from the database (`recovery.restored`),
   which is far cheaper than decoding the whole log again.
5. Say in one line what was found and done, log it, and keep it with its time in
   `<data_dir>/last-recovery.json` for `checkpoint`.

All of it runs under the data directory's lock (`recovery.lock`): the caller (the `run` command) should
take the lock itself before calling and hold it until the service has stopped, so no `rebuild` or
`restore` can slip in between recovery and the service. `recover` blocks; run it in a worker thread.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import apsw
import attrs

from recovery.lock import DataDirLock
from recovery.progress import Progress, resolve
from recovery.replay import apply_tail, rebuild_from_log, set_aside
from recovery.restored import restore_events_from_database
from service import projection
from service.attribution.config import AttributionConfig as CoreConfig
from service.backup.directory import write_atomically
from service.config import Config
from service.events import GuildRestored
from wal import RecoveryReport, WalCorruption, WalFormatError, open_log

log = logging.getLogger("invite_ledger.recovery")

LAST_RECOVERY_NAME = "last-recovery.json"
#: Exit status of a start refused because the log is damaged (the `run` command returns it).
EXIT_LOG_DAMAGED = 3


class StartupRefused(Exception):
    """The log is damaged beyond a torn tail: starting would build on records that may be wrong. The
    message names where, and the command that restores the log from backup."""

    exit_code = EXIT_LOG_DAMAGED

    def __init__(
        self, message: str, *, segment: str | None, offset: int | None, lsn: int | None, command: str
    ) -> None:
        super().__init__(message)
        self.segment = segment
        self.offset = offset
        self.lsn = lsn
        self.restore_command = command


def restore_command(config: Config) -> str:
    """The command an operator runs to restore this data directory from its (first) backup target."""
    target = next(iter(config.backup_targets), "TARGET")
    parts = ["invite-ledger restore --from", target, "--data-dir", str(config.data_dir.absolute()), "--force"]
    if config.source:
        parts += ["--config", str(Path(config.source).absolute())]
    return " ".join(parts)


def refuse(exc: WalCorruption | WalFormatError, config: Config) -> StartupRefused:
    command = restore_command(config)
    if isinstance(exc, WalCorruption):
        where = f"segment {exc.segment} at byte offset {exc.offset}" + (
            f" (LSN {exc.lsn})" if exc.lsn is not None else ""
        )
        what = exc.reason
        segment, offset, lsn = exc.segment, exc.offset, exc.lsn
    else:
        where, what = "a segment", str(exc)
        segment, offset, lsn = None, None, None
    no_target = "" if config.backup_targets else " (no backup target is configured: name the one you have)"
    message = (
        f"recovery: refusing to start: the log in {config.wal_dir} is damaged in {where}: {what}. "
        "Acknowledged records may be affected, so nothing was changed. Restore the log from backup"
        f"{no_target} with:\n    {command}\n"
        "The damaged log is moved aside, never deleted; `invite-ledger verify` lists every problem."
    )
    return StartupRefused(message, segment=segment, offset=offset, lsn=lsn, command=command)


@attrs.frozen
class DatabaseState:
    status: str  # ok | missing | empty | unreadable | schema | ahead
    applied_lsn: int
    problem: str | None = None


def inspect_database(db_path: Path, log_last_lsn: int) -> DatabaseState:
    """What the database file is, without changing it."""
    if not db_path.exists():
        return DatabaseState("missing", 0, "missing")
    try:
        conn = projection.open_database(db_path, readonly=True)
    except FileNotFoundError:
        return DatabaseState("missing", 0, "missing")
    except projection.SchemaTooNewError as exc:
        return DatabaseState("schema", 0, str(exc))
    except projection.NotAProjectionError as exc:
        return DatabaseState("unreadable", 0, str(exc))
    except projection.ProjectionSchemaError as exc:
        if db_path.stat().st_size == 0 or "schema version 0" in str(exc):
            return DatabaseState("empty", 0, "empty")
        return DatabaseState("schema", 0, str(exc))
    except apsw.Error as exc:
        return DatabaseState("unreadable", 0, f"{db_path} cannot be read: {exc}")
    try:
        applied = projection.applied_lsn(conn)
    except apsw.Error as exc:
        return DatabaseState("unreadable", 0, f"{db_path} cannot be read: {exc}")
    finally:
        conn.close()
    if applied > log_last_lsn:
        return DatabaseState(
            "ahead", applied, f"applied up to LSN {applied:,} but the log ends at LSN {log_last_lsn:,}"
        )
    return DatabaseState("ok", applied)


@attrs.frozen
class StartupReport:
    """What start-up recovery found and did; `line` says it in one line."""

    line: str
    wal_dir: Path
    db_path: Path
    segments: int
    last_lsn: int  # the end of the log: every record up to it is durable
    torn_bytes_cut: int
    torn_segment: str | None
    torn_offset: int | None  # where the log now ends in that segment
    removed_temp_files: tuple[str, ...]
    database: str  # what the database was found to be: ok | missing | empty | unreadable | schema | ahead
    database_problem: str | None
    set_aside: Path | None  # where an unusable database file was moved
    rebuilt: bool
    applied_before: int  # applied LSN found in the database (0 when it was rebuilt)
    applied_records: int  # records applied now (by the rebuild or from the tail)
    applied_lsn: int
    restored: tuple[GuildRestored, ...]
    seconds: float
    timings: Mapping[str, float]
    finished_at: datetime
    batch_bytes: int = 1 << 20  # the writer's largest write: a longer torn tail includes free space
    #: The log as recovery opened (and repaired) it. The service holds the data directory's lock from
    #: before recovery, so nothing changes the log in between: the WAL writer starts from this instead of
    #: verifying every frame a second time.
    opened_log: RecoveryReport | None = attrs.field(default=None, eq=False, repr=False)

    def summary(self) -> dict[str, Any]:
        """JSON-ready, without the restored events (for last-recovery.json and `checkpoint --json`)."""
        return {
            "line": self.line,
            "finished_at": self.finished_at.isoformat(),
            "seconds": round(self.seconds, 3),
            "ok": True,
            "last_lsn": self.last_lsn,
            "segments": self.segments,
            "torn_bytes_cut": self.torn_bytes_cut,
            "database": self.database,
            "rebuilt": self.rebuilt,
            "applied_records": self.applied_records,
            "applied_lsn": self.applied_lsn,
            "guilds_restored": len(self.restored),
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
        }


def last_recovery_path(config: Config) -> Path:
    return config.data_dir / LAST_RECOVERY_NAME


def read_last_recovery(data_dir: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((data_dir / LAST_RECOVERY_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _remember(config: Config, summary: Mapping[str, Any]) -> None:
    try:
        write_atomically(last_recovery_path(config), (json.dumps(summary, indent=1) + "\n").encode())
    except OSError as exc:  # a full disk must not stop a start that otherwise worked
        log.warning("could not write %s: %s", last_recovery_path(config), exc)


def _n(value: int) -> str:
    return f"{value:,}"


def _line(r: StartupReport) -> str:
    if r.last_lsn == 0:
        found = "log empty"
    else:
        found = f"log {_n(r.last_lsn)} records in {r.segments} segment{'s' if r.segments != 1 else ''}"
    notes = []
    if r.torn_bytes_cut and r.torn_offset is not None and r.torn_bytes_cut > r.batch_bytes:
        # More than one write can hold: the cut also took the segment's preallocated (zero) space.
        notes.append(
            f"torn tail cut in {r.torn_segment} at byte {_n(r.torn_offset)}: an unacknowledged write "
            "and the segment's preallocated space"
        )
    elif r.torn_bytes_cut:
        notes.append(f"torn tail {_n(r.torn_bytes_cut)} bytes cut in {r.torn_segment}")
    if r.removed_temp_files:
        notes.append(f"{len(r.removed_temp_files)} half-created segment file(s) removed")
    if notes:
        found += f" ({'; '.join(notes)})"
    t = r.timings
    if r.rebuilt:
        why = {
            "missing": "database missing",
            "empty": "database empty",
            "unreadable": "database unreadable",
            "schema": "database of another schema version",
            "ahead": f"database ahead of the log ({r.database_problem})",
        }.get(r.database, f"database {r.database}")
        aside = f", old file kept as {r.set_aside.name}" if r.set_aside is not None else ""
        db = f"{why}{aside}; rebuilt from the log ({_n(r.applied_records)} records) in {t['database']:.2f} s"
    elif r.applied_records:
        db = f"database behind by {_n(r.applied_records)}, applied in {t['apply']:.2f} s"
    else:
        db = f"database up to date at LSN {_n(r.applied_lsn)}"
    guilds = f"{len(r.restored)} guild{'s' if len(r.restored) != 1 else ''} restored"
    return f"recovery: {found}; {db}; {guilds}; ready in {r.seconds:.2f} s"


def recover(
    config: Config, *, progress: Progress | bool | None = None, core: CoreConfig | None = None
) -> StartupReport:
    """Bring the log and the database into a state the service can start on; see the module docstring.
    Raises StartupRefused for a damaged log, DataDirBusy if another process holds the data directory."""
    started = time.perf_counter()
    with DataDirLock(config.data_dir, "service start-up"):
        try:
            report = _recover(config, resolve(progress), core, started)
        except (WalCorruption, WalFormatError) as exc:
            refused = refuse(exc, config)
            log.error("%s", refused)
            _remember(config, {"line": str(refused).splitlines()[0], "ok": False,
                               "finished_at": datetime.now(UTC).isoformat()})  # fmt: skip
            raise refused from exc
        log.info("%s", report.line)
        _remember(config, report.summary())
        return report


@attrs.frozen
class _CaughtUp:
    tail: int  # records applied from the log's tail
    applied_lsn: int
    restored: tuple[GuildRestored, ...]
    apply_s: float
    restore_s: float


def _timed_open_log(wal_dir: Path) -> tuple[RecoveryReport, float]:
    mark = time.perf_counter()
    return open_log(wal_dir, repair=True), time.perf_counter() - mark


def _recover(config: Config, bar: Progress, core: CoreConfig | None, started: float) -> StartupReport:
    timings: dict[str, float] = {}
    # Sequential on purpose: verifying the log in a worker thread while the tail is applied was measured
    # slower (6.7 s against 3.9 s for a million records): both are GIL-bound Python, and SQLite's thread
    # waits for the GIL after each step (the convoy effect).
    opened, timings["open_log"] = _timed_open_log(config.wal_dir)
    state = inspect_database(config.db_path, opened.last_lsn)
    caught_up: _CaughtUp | apsw.Error | None = None
    if state.status == "ok":
        try:
            caught_up = _apply_and_read(config, opened.last_lsn, bar, core)
        except apsw.Error as exc:
            caught_up = exc  # damage inside a file that opened fine shows only when a page is read
    last = opened.last_lsn

    aside: Path | None = None
    rebuilt = False
    if isinstance(caught_up, apsw.Error):
        state = DatabaseState("unreadable", state.applied_lsn, f"{config.db_path} is damaged: {caught_up}")
    if state.status != "ok":
        mark = time.perf_counter()
        aside = _rebuild(config, state, last, bar)
        rebuilt = True
        timings["database"] = time.perf_counter() - mark
    if not isinstance(caught_up, _CaughtUp):
        caught_up = _apply_and_read(config, last, bar, core)
    timings["apply"], timings["restore_events"] = caught_up.apply_s, caught_up.restore_s

    torn = opened.torn_tail if opened.torn_bytes_cut else None
    report = StartupReport(
        line="",
        wal_dir=config.wal_dir,
        db_path=config.db_path,
        segments=len(opened.segments),
        last_lsn=last,
        torn_bytes_cut=opened.torn_bytes_cut,
        torn_segment=torn.segment if torn is not None else None,
        torn_offset=torn.offset if torn is not None else None,
        removed_temp_files=opened.removed_temp_files,
        database=state.status,
        database_problem=state.problem,
        set_aside=aside,
        rebuilt=rebuilt,
        applied_before=0 if rebuilt else state.applied_lsn,
        applied_records=(last if rebuilt else 0) + caught_up.tail,
        applied_lsn=caught_up.applied_lsn,
        restored=caught_up.restored,
        seconds=time.perf_counter() - started,
        timings=timings,
        finished_at=datetime.now(UTC),
        batch_bytes=config.wal.batch_bytes,
        opened_log=opened,
    )
    return attrs.evolve(report, line=_line(report))


def _apply_and_read(config: Config, last: int, bar: Progress, core: CoreConfig | None) -> _CaughtUp:
    """Apply the log's tail up to `last`, then read the restored events from the database."""
    mark = time.perf_counter()
    conn = projection.open_database(config.db_path)
    try:
        tail, applied = apply_tail(conn, config.wal_dir, last, progress=bar)
        middle = time.perf_counter()
        restored = tuple(restore_events_from_database(conn, core))
    finally:
        conn.close()
    return _CaughtUp(tail, applied, restored, middle - mark, time.perf_counter() - middle)


def _rebuild(config: Config, state: DatabaseState, last: int, bar: Progress) -> Path | None:
    aside = None
    if state.status in ("unreadable", "schema", "ahead"):
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        aside = set_aside(config.db_path, f"{state.status}-{stamp}")
        log.warning(
            "database %s: %s; set aside as %s, rebuilding from the log", state.status, state.problem, aside
        )
    rebuild_from_log(config.wal_dir, config.db_path, to_lsn=last, progress=bar)
    return aside
