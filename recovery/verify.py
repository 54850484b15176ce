"""`verify`: every check there is, read-only; any problem makes the command exit non-zero.

1. The log: every segment's header and every frame's checksum (`wal.inspect_log`, no repair). A torn tail
   is noted, not counted as a problem: it is a write that was never acknowledged, and the next start cuts
   it (while the service runs, the active segment's end may simply be a write in progress).
2. The database: the projection is rebuilt from the log into a temporary file, up to the live database's
   applied LSN (read inside one read transaction, so a running service's applier does not move it), and
   the two are compared row by row, table by table; the first differing rows of each table are shown.
3. The backups: each target's segments against the local sealed segments: missing at the target, listed
   in its manifest but absent, extra at the target (LSNs this log does not have), or a checksum (in the
   manifest, beside the object) that differs from the local file's; `read_back` also reads every object
   back (for S3 that downloads the whole backup).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apsw
import attrs

from recovery.progress import NoProgress, Progress
from recovery.replay import rebuild_from_log
from service import projection
from service.backup.restore import remote_segments
from service.backup.targets import SEGMENTS_PREFIX, digest_file, open_target, parse_range, segment_name
from service.config import Config
from service.projection.ids import text_columns
from wal import WalError, inspect_log

ROWS_SHOWN = 3  # differing rows shown per table
_Rows = Iterator[tuple[tuple[Any, ...], tuple[Any, ...]]]


@attrs.frozen
class TableDiff:
    table: str
    missing: int  # rows the log implies that the database lacks
    extra: int  # rows the database has that the log does not imply
    different: int  # same key, other content
    examples: tuple[dict[str, Any], ...]


@attrs.frozen
class TargetCheck:
    url: str
    missing: tuple[str, ...]  # sealed local segments not at the target
    extra: tuple[str, ...]  # objects at the target this log does not have
    different: tuple[str, ...]
    error: str | None = None

    @property
    def ok(self) -> bool:
        return not (self.missing or self.extra or self.different or self.error)


@attrs.frozen
class VerifyReport:
    segments: tuple[dict[str, Any], ...]
    log_problem: str | None
    torn_tail: str | None
    compared_at_lsn: int | None
    database_problem: str | None
    tables: tuple[TableDiff, ...]
    targets: tuple[TargetCheck, ...]

    @property
    def problems(self) -> list[str]:
        found = []
        if self.log_problem:
            found.append(f"log: {self.log_problem}")
        if self.database_problem:
            found.append(f"database: {self.database_problem}")
        for t in self.tables:
            found.append(
                f"database table {t.table}: {t.missing} missing, {t.extra} extra, {t.different} different"
            )
        for target in self.targets:
            if target.error:
                found.append(f"backup {target.url}: {target.error}")
            for what in ("missing", "extra", "different"):
                names = getattr(target, what)
                if names:
                    found.append(f"backup {target.url}: {len(names)} {what} ({', '.join(names[:3])}...)")
        return found


def _columns(conn: apsw.Connection, table: str) -> tuple[list[str], list[str]]:
    """(all columns in SELECT * order, primary-key columns in key order; all columns if no key)."""
    info = list(conn.execute(f'PRAGMA table_info("{table}")'))  # cid, name, type, notnull, default, pk
    names = [str(col[1]) for col in info]
    key = [str(col[1]) for col in sorted(info, key=lambda col: col[5]) if col[5]]
    return names, key or names


def _rows(conn: apsw.Connection, table: str, names: list[str], key: list[str]) -> _Rows:
    # Ids read (and ordered) as the text the log holds, however the schema stores them.
    readable = dict(text_columns(conn, table))
    order = ", ".join(readable[k] for k in key)
    index = [names.index(k) for k in key]
    columns = ", ".join(readable[name] for name in names)
    for row in conn.execute(f'SELECT {columns} FROM "{table}" ORDER BY {order}'):
        yield tuple(row[i] for i in index), tuple(row)


def _tables(conn: apsw.Connection) -> list[str]:
    return [
        str(name)
        for (name,) in conn.execute(
            "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
        )
    ]


def compare_databases(live: apsw.Connection, expected: apsw.Connection) -> list[TableDiff]:
    """Row-by-row differences, per table, merging both sides in primary-key order."""
    live_tables, expected_tables = set(_tables(live)), set(_tables(expected))
    diffs = []
    for table in sorted(live_tables | expected_tables):
        names, key = _columns(expected if table in expected_tables else live, table)
        left = _rows(live, table, names, key) if table in live_tables else iter(())
        right = _rows(expected, table, names, key) if table in expected_tables else iter(())
        diff = _compare_table(table, left, right)
        if diff is not None:
            diffs.append(diff)
    return diffs


def _compare_table(table: str, left: _Rows, right: _Rows) -> TableDiff | None:
    counts = {"missing": 0, "extra": 0, "different": 0}
    examples: list[dict[str, Any]] = []

    def note(kind: str, key_value: Any, have: Any, want: Any) -> None:
        counts[kind] += 1
        if len(examples) < ROWS_SHOWN:
            examples.append({"kind": kind, "key": list(key_value), "database": have, "log": want})

    a, b = next(left, None), next(right, None)
    while a is not None or b is not None:
        if b is None or (a is not None and _lt(a[0], b[0])):
            assert a is not None
            note("extra", a[0], list(a[1]), None)
            a = next(left, None)
        elif a is None or _lt(b[0], a[0]):
            note("missing", b[0], None, list(b[1]))
            b = next(right, None)
        else:
            if a[1] != b[1]:
                note("different", a[0], list(a[1]), list(b[1]))
            a, b = next(left, None), next(right, None)
    if not any(counts.values()):
        return None
    return TableDiff(table, counts["missing"], counts["extra"], counts["different"], tuple(examples))


def _lt(x: tuple[Any, ...], y: tuple[Any, ...]) -> bool:
    # SQLite orders NULL first, numbers before text: mirror that so the merge follows ORDER BY.
    return tuple(_sort_key(v) for v in x) < tuple(_sort_key(v) for v in y)


def _sort_key(value: Any) -> tuple[int, Any]:
    if value is None:
        return (0, 0)
    if isinstance(value, int | float):
        return (1, value)
    if isinstance(value, str):
        return (2, value)
    return (3, bytes(value))


def _check_database(
    config: Config, log_ok: bool, progress: Progress
) -> tuple[int | None, str | None, list[TableDiff]]:
    try:
        live = projection.open_database(config.db_path, readonly=True)
    except FileNotFoundError:
        return None, f"no database at {config.db_path} (the next start rebuilds it)", []
    except (projection.ProjectionSchemaError, apsw.Error) as exc:
        return None, f"unusable: {exc}", []
    result: tuple[int | None, str | None, list[TableDiff]] = (None, None, [])
    try:
        with live:  # one read snapshot: a running applier cannot move it while we compare
            applied = projection.applied_lsn(live)
            result = (applied, None, _against_log(live, applied, config, progress) if log_ok else [])
    except WalError as exc:
        result = (None, f"the log does not reach the database's applied LSN: {exc}", [])
    except apsw.Error as exc:
        result = (None, f"cannot be read: {exc}", [])
    finally:
        live.close()
    return result


def _against_log(live: apsw.Connection, applied: int, config: Config, progress: Progress) -> list[TableDiff]:
    """The live database (inside its read transaction) against the log's projection up to `applied`."""
    with tempfile.TemporaryDirectory(prefix=".verify-", dir=config.data_dir) as scratch_dir:
        scratch = Path(scratch_dir) / "expected.sqlite3"
        rebuild_from_log(config.wal_dir, scratch, to_lsn=applied, progress=progress)
        expected = projection.open_database(scratch, readonly=True)
        try:
            return compare_databases(live, expected)
        finally:
            expected.close()


def _check_target(url: str, config: Config, sealed: list[Any], active: Any, read_back: bool) -> TargetCheck:
    try:
        target = open_target(url, config.backup)
        listed = set(target.list(SEGMENTS_PREFIX))
        remote = {s.name: s for s in remote_segments(target)}
        manifest = target.read_manifest()
        local = {segment_name(s.first_lsn, s.last_lsn): s for s in sealed}
        # What the manifest lists must exist; what is neither here nor there is "missing".
        missing = tuple(sorted(n for n in local if n not in listed))
        absent = tuple(sorted(n for n in remote if n not in listed))
        extra = tuple(sorted(n for n in listed if n not in local and parse_range(n) is not None))
        different = []
        for name in sorted(set(local) & listed):
            mine = digest_file(local[name].path)
            stored = target.head(name)
            theirs: set[tuple[int, str | None]] = {(remote[name].size, remote[name].sha256)}
            if stored is not None:
                theirs.add((stored.size, stored.sha256))
            if read_back:
                read = target.digest(name)
                theirs.add((read.size, read.sha256))
            if theirs != {(mine.size, mine.sha256)}:
                different.append(name)
        partial = manifest.active if manifest is not None else None
        if partial is not None and active is not None and partial.first_lsn == active.first_lsn:
            info = digest_file(active.path, limit=partial.size)
            if (info.size, info.sha256) != (partial.size, partial.sha256):
                different.append(partial.name)
    except Exception as exc:  # unreachable, unreadable: a finding of verify, reported, never raised
        return TargetCheck(url, (), (), (), error=str(exc) or type(exc).__name__)
    error = f"the manifest lists {len(absent)} segment(s) the target does not hold: {', '.join(absent[:3])}"
    return TargetCheck(url, missing, extra, tuple(different), error=error if absent else None)


def verify(
    config: Config, *, progress: Progress | None = None, backups: bool = True, read_back: bool = False
) -> VerifyReport:
    progress = progress or NoProgress()
    found = inspect_log(config.wal_dir)
    segments = tuple(
        {
            "name": s.name,
            "first_lsn": s.first_lsn,
            "last_lsn": s.last_lsn,
            "records": s.record_count,
            "state": "sealed" if s.sealed else "active",
            "checksums": s.status.value,
            "problem": s.problem,
        }
        for s in found.segments
    )
    log_problem = str(found.corruption) if found.corruption is not None else None
    torn = found.torn_tail
    torn_note = (
        f"{torn.segment}: {torn.bytes} bytes after offset {torn.offset} ({torn.reason})" if torn else None
    )
    applied, db_problem, tables = _check_database(config, log_problem is None, progress)
    targets: list[TargetCheck] = []
    if backups:
        sealed = [s for s in found.segments if s.sealed and s.last_lsn is not None]
        active = found.segments[-1] if found.segments and not found.segments[-1].sealed else None
        targets = [_check_target(url, config, sealed, active, read_back) for url in config.backup_targets]
    return VerifyReport(segments, log_problem, torn_note, applied, db_problem, tuple(tables), tuple(targets))
