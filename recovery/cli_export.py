"""`export`: the join log as CSV (opens in Excel) or JSON Lines, from the database, read-only.

Registered by `recovery.cli` only when no other module (service/cli_data.py) provides `export` first.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any


def _moment(text: str) -> datetime:
    """An ISO date or date-time; a date means its midnight, a time without offset means UTC."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        try:
            value = datetime.combine(date.fromisoformat(text), datetime.min.time())
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an ISO date or date-time") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def register_export(subparsers: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    export = subparsers.add_parser(
        "export",
        help="the join log as CSV or JSON Lines (read-only; works while the service runs)",
        description="Export recorded joins from the database. CSV is UTF-8 with a BOM for Excel.",
    )
    common(export)
    export.add_argument("--guild", metavar="ID", help="only this guild (default: all)")
    export.add_argument("--format", choices=("csv", "jsonl"), default="csv")
    export.add_argument(
        "--since", type=_moment, metavar="WHEN", help="joins at or after (ISO date/time, UTC)"
    )
    export.add_argument("--until", type=_moment, metavar="WHEN", help="joins before (ISO date/time, UTC)")
    export.add_argument("--out", type=Path, metavar="FILE", help="write here (default: standard output)")
    export.set_defaults(handler=export_command)


def export_command(args: argparse.Namespace) -> int:
    from recovery.cli import _fail, load
    from service import projection
    from service.config import ConfigError
    from service.queries import export_to_file

    try:
        config = load(args)
    except ConfigError as exc:
        return _fail(str(exc), 2)
    try:
        conn = projection.open_read_connection(config.db_path)
    except FileNotFoundError:
        return _fail(f"no database at {config.db_path}: start the service (or run `rebuild`) first")
    except projection.ProjectionSchemaError as exc:
        return _fail(f"{exc}; run `invite-ledger rebuild`")
    try:
        if args.out is not None:
            rows = export_to_file(
                conn, args.out, guild_id=args.guild, fmt=args.format, since=args.since, until=args.until
            )
            print(f"exported {rows:,} joins to {args.out}", file=sys.stderr)
            return 0
        chunks = projection.export_csv if args.format == "csv" else projection.export_jsonl
        out = sys.stdout.buffer
        for chunk in chunks(conn, guild_id=args.guild, since=args.since, until=args.until):
            out.write(chunk)
        out.flush()
    finally:
        conn.close()
    return 0
