"""Tables for people: what `checkpoint` and `verify` print on a terminal (rich; plain text when piped)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import attrs
from rich.console import Console
from rich.table import Table

from recovery.status import Checkpoint
from recovery.verify import VerifyReport

SHOWN_SEGMENTS = 30


def _console() -> Console:
    # Piped output would otherwise be cut at 80 columns, mid segment name.
    console = Console()
    return console if console.is_terminal else Console(width=140)


def _n(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172_800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.0f} days"


def _when(value: datetime | None) -> str:
    return "never" if value is None else value.isoformat(timespec="seconds")


def _segments_table(rows: list[dict[str, Any]], title: str) -> Table:
    """Rows with name, first_lsn, last_lsn, records, state, checksums and maybe size and problem."""
    table = Table(title=title, title_justify="left")
    for column in ("segment", "first LSN", "last LSN", "records", "bytes", "state", "checksums"):
        table.add_column(
            column, justify="right" if "LSN" in column or column in ("records", "bytes") else "left"
        )
    shown: list[dict[str, Any] | None] = list(rows)
    if len(rows) > SHOWN_SEGMENTS:
        shown = [*rows[:5], None, *rows[-(SHOWN_SEGMENTS - 6) :]]
    for row in shown:
        if row is None:
            table.add_row(f"... {len(rows) - SHOWN_SEGMENTS + 1} more", "", "", "", "", "", "")
            continue
        status = str(row["checksums"]) + (f": {row['problem']}" if row.get("problem") else "")
        table.add_row(
            str(row["name"]),
            _n(row["first_lsn"]),
            _n(row["last_lsn"]),
            _n(row["records"]),
            _n(row.get("size")),
            str(row["state"]),
            status,
        )
    return table


def render_checkpoint(found: Checkpoint, console: Console | None = None) -> None:
    console = console or _console()
    running = f"running: {found.running}" if found.running else "not running"
    console.print(f"[bold]data directory[/bold] {found.data_dir} ({running})")
    rows = [{**attrs.asdict(r), "checksums": r.status} for r in found.segments]
    console.print(_segments_table(rows, f"log: {len(found.segments)} segments"))
    if found.log_note:
        console.print(f"log: {found.log_note}")

    table = Table(title="progress", title_justify="left")
    for column in ("", "LSN", "behind (records)", "behind (time)", "last success"):
        table.add_column(column, justify="left" if column in ("", "last success") else "right")
    table.add_row("durable (end of the log)", _n(found.durable_lsn), "", "", "")
    table.add_row(
        "applied (database)",
        _n(found.applied_lsn),
        _n(found.applied_lag_records),
        _age(found.applied_lag_seconds),
        "",
    )
    for target in found.targets:
        shipped = _n(target.shipped_lsn)
        if target.active_shipped_lsn is not None:
            shipped += f" (+ active prefix to {target.active_shipped_lsn:,})"
        if target.remote_last_lsn is not None:
            shipped += f" [target: {target.remote_last_lsn:,}]"
        table.add_row(
            f"shipped to {target.url}",
            shipped,
            _n(target.lag_records),
            _age(target.lag_seconds),
            _when(target.last_success_at),
        )
        if target.remote_error:
            table.add_row("", f"[red]unreachable: {target.remote_error}[/red]", "", "", "")
    console.print(table)
    if found.database_note:
        console.print(f"database: {found.database_note}")
    if not found.targets:
        console.print("backup: off (no target configured)")
    last = found.last_recovery
    if last:
        console.print(f"last recovery ({last.get('finished_at', '?')}): {last.get('line', '?')}")
    else:
        console.print("last recovery: none recorded")


def render_verify(report: VerifyReport, console: Console | None = None) -> None:
    console = console or _console()
    console.print(
        _segments_table(list(report.segments), f"log: {len(report.segments)} segments, every checksum")
    )
    if report.torn_tail:
        console.print(
            f"note: torn tail (an unacknowledged last write; the next start cuts it): {report.torn_tail}"
        )
    for table_diff in report.tables:
        console.print(
            f"[red]database table {table_diff.table}[/red]: {table_diff.missing} missing, "
            f"{table_diff.extra} extra, {table_diff.different} different rows"
        )
        for example in table_diff.examples:
            console.print(f"  {example['kind']} key={example['key']}")
            console.print(f"    database: {example['database']}")
            console.print(f"    log:      {example['log']}")
    if report.compared_at_lsn is not None and not report.tables and not report.database_problem:
        console.print(f"database: equal to the log's projection at LSN {report.compared_at_lsn:,}")
    for target in report.targets:
        if target.ok:
            console.print(f"backup {target.url}: every sealed segment present with the same checksum")
    problems = report.problems
    for problem in problems:
        console.print(f"[red]problem[/red]: {problem}")
    console.print(
        "[green]verify: no problem found[/green]" if not problems else f"verify: {len(problems)} problem(s)"
    )
