"""The operator's commands: `checkpoint` (alias `status`), `rebuild`, `verify`, `restore`, and `export`
when no other module provides it. Tables for people (rich), `--json` for scripts.

Exit status: 0 all good; 1 a problem was found or the command refused (the message says why and what to
do); 2 a usage or configuration error; 130 interrupted (nothing is left half-done: a rebuild writes a
temporary file and renames it, a restore stages its downloads and resumes them).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs

from recovery.lock import DataDirBusy, DataDirLock
from recovery.progress import auto_progress
from service.config import CONFIG_PATH_ENV, Config, ConfigError, load_config


def register(subparsers: Any) -> None:
    checkpoint = subparsers.add_parser(
        "checkpoint",
        aliases=["status"],
        help="segments, durable/applied/shipped LSNs, lags, last backup and recovery (read-only)",
        description="Where the log, the database and the backups stand. Read-only: safe while it runs.",
    )
    _common(checkpoint)
    checkpoint.add_argument("--remote", action="store_true", help="also read each backup target's manifest")
    checkpoint.set_defaults(handler=checkpoint_command)

    rebuild = subparsers.add_parser(
        "rebuild",
        help="rebuild the database from the log (refused while the service runs)",
        description="Rebuild the database from the log, into a temporary file renamed over the old one "
        "when complete. With --to-lsn, the database shows the ledger as of that record until the "
        "service starts again and applies the rest.",
    )
    _common(rebuild)
    rebuild.add_argument("--to-lsn", type=_positive, metavar="N", help="stop after record N")
    rebuild.set_defaults(handler=rebuild_command)

    verify = subparsers.add_parser(
        "verify",
        help="check every segment's checksums, the database against the log, the backups against the log",
        description="Every check, read-only; exits 1 on any problem.",
    )
    _common(verify)
    verify.add_argument("--no-backups", action="store_true", help="skip the comparison with backup targets")
    verify.add_argument(
        "--read-back", action="store_true", help="also read every backup object back (downloads S3 backups)"
    )
    verify.set_defaults(handler=verify_command)

    restore = subparsers.add_parser(
        "restore",
        help="download the log from a backup target, check it, rebuild the database",
        description="Works on an empty machine: no configuration file is needed (S3 credentials come from "
        "the AWS_* environment variables). Refuses to replace an existing log unless --force; the old log "
        "is then moved aside, never deleted, and its intact records beyond the backup are kept.",
    )
    _common(restore)
    restore.add_argument(
        "--from", dest="source", required=True, metavar="TARGET", help="file:///path or s3://bucket/prefix"
    )
    restore.add_argument("--to-lsn", type=_positive, metavar="N", help="rebuild the database to record N")
    restore.add_argument("--force", action="store_true", help="replace an existing log (moved aside)")
    restore.set_defaults(handler=restore_command)

    if "export" not in getattr(subparsers, "choices", {}):
        from recovery.cli_export import register_export

        register_export(subparsers, _common)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("LSNs start at 1")
    return value


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", metavar="FILE", help=f"TOML configuration file (default: ${CONFIG_PATH_ENV})"
    )
    parser.add_argument("--data-dir", metavar="DIR", help="data directory (overrides storage.data_dir)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def load(args: argparse.Namespace) -> Config:
    """--config, else $INVITE_LEDGER_CONFIG, else defaults and the environment; --data-dir overrides."""
    path = args.config or os.environ.get(CONFIG_PATH_ENV)
    config = load_config(Path(path) if path else None, os.environ)
    if args.data_dir:
        config = attrs.evolve(config, storage=attrs.evolve(config.storage, data_dir=str(args.data_dir)))
    return config


def _emit_json(data: Any) -> None:
    print(json.dumps(data, indent=1, default=str, ensure_ascii=False))


def _fail(message: str, code: int = 1) -> int:
    print(f"invite-ledger: {message}", file=sys.stderr)
    return code


def _guarded(run: Any, args: argparse.Namespace) -> int:
    try:
        config = load(args)
    except ConfigError as exc:
        return _fail(str(exc), 2)
    try:
        return int(run(args, config))
    except DataDirBusy as exc:
        return _fail(str(exc))


# -- checkpoint ------------------------------------------------------------------------------------


def checkpoint_command(args: argparse.Namespace) -> int:
    return _guarded(_checkpoint, args)


def _checkpoint(args: argparse.Namespace, config: Config) -> int:
    from recovery.render import render_checkpoint
    from recovery.status import take_checkpoint

    found = take_checkpoint(config, remote=args.remote)
    if args.json:
        _emit_json(found.to_json())
    else:
        render_checkpoint(found)
    return 0


# -- rebuild ---------------------------------------------------------------------------------------


def rebuild_command(args: argparse.Namespace) -> int:
    return _guarded(_rebuild, args)


def _rebuild(args: argparse.Namespace, config: Config) -> int:
    import time

    from recovery.replay import rebuild_from_log
    from wal import WalCorruption, WalError, list_segments

    with DataDirLock(config.data_dir, "rebuild"):
        segments = list_segments(config.wal_dir)
        end = 0
        if segments:
            end = segments[-1].last_lsn if segments[-1].last_lsn is not None else segments[-1].first_lsn - 1
        if args.to_lsn is not None and args.to_lsn > end:
            return _fail(f"--to-lsn {args.to_lsn:,} is beyond the end of the log (LSN {end:,})")
        started = time.perf_counter()
        try:
            applied = rebuild_from_log(
                config.wal_dir, config.db_path, to_lsn=args.to_lsn, progress=auto_progress()
            )
        except WalCorruption as exc:
            return _fail(f"{exc}\nThe database was left as it was.")
        except WalError as exc:
            return _fail(f"the log cannot be read: {exc}\nThe database was left as it was.")
        seconds = time.perf_counter() - started
    result = {
        "applied_lsn": applied,
        "log_end_lsn": end,
        "seconds": round(seconds, 3),
        "db_path": str(config.db_path),
    }
    if args.json:
        _emit_json(result)
    else:
        line = f"rebuilt {config.db_path} from the log: {applied:,} records in {seconds:.2f} s"
        if applied < end:
            line += f" (as of LSN {applied:,}; the log goes on to {end:,}, which the next start applies)"
        print(line)
    return 0


# -- verify ----------------------------------------------------------------------------------------


def verify_command(args: argparse.Namespace) -> int:
    return _guarded(_verify, args)


def _verify(args: argparse.Namespace, config: Config) -> int:
    from recovery.render import render_verify
    from recovery.verify import verify

    report = verify(config, progress=auto_progress(), backups=not args.no_backups, read_back=args.read_back)
    problems = report.problems
    if args.json:
        data = {"ok": not problems, "problems": problems, **_unstructured(report)}
        _emit_json(data)
    else:
        render_verify(report)
    return 1 if problems else 0


def _unstructured(value: Any) -> dict[str, Any]:
    from service import convert

    data: dict[str, Any] = convert.unstructure(value)
    return data


# -- restore ---------------------------------------------------------------------------------------


def restore_command(args: argparse.Namespace) -> int:
    return _guarded(_restore, args)


def _restore(args: argparse.Namespace, config: Config) -> int:
    from recovery.restore import RestoreRefused, restore
    from service.backup.restore import ChecksumError, GapError
    from service.backup.targets import TargetError

    try:
        report = restore(config, args.source, to_lsn=args.to_lsn, force=args.force, progress=auto_progress())
    except RestoreRefused as exc:
        return _fail(f"restore refused: {exc}")
    except GapError as exc:
        return _fail(f"restore refused: the backup has a gap: {exc}. Nothing was replaced.")
    except ChecksumError as exc:
        return _fail(f"restore refused: a checksum does not match: {exc}. Nothing was replaced.")
    except (TargetError, OSError, ValueError) as exc:
        return _fail(f"restore failed: {exc}. Nothing was replaced; running the command again resumes it.")
    if args.json:
        _emit_json({**_unstructured(report), "line": report.line, "at": datetime.now(UTC).isoformat()})
    else:
        print(report.line)
    return 0
