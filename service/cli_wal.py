"""`invite-ledger wal inspect` and `invite-ledger wal dump`: look at the log without touching it.

Both open the log read-only: a torn tail is reported, never cut (the next start of the service does that),
and corruption is reported with the segment, offset and LSN, never repaired. The WAL directory is
`<data-dir>/wal`.
"""

from __future__ import annotations

import argparse
import base64
import csv
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import attrs

from service import convert
from service.records import TYPE_CLASSES, TYPE_NAMES
from wal import LogEntry, WalCorruption, WalError, inspect_log, iter_frames
from wal.recover import LogInspection

DEFAULT_DATA_DIR = Path("data")
_BASE_COLUMNS = ("lsn", "type", "type_code", "segment")
_RAW_COLUMNS = ("payload", "payload_base64", "error")


def register(subparsers: Any) -> None:
    wal = subparsers.add_parser("wal", help="inspect or dump the write-ahead log (read-only)")
    wal.set_defaults(handler=lambda _args: _print_help(wal))
    commands = wal.add_subparsers(dest="wal_command", metavar="WAL_COMMAND")

    inspect = commands.add_parser(
        "inspect", help="segments with LSN ranges, sizes, active or sealed, and checksum status"
    )
    _data_dir_option(inspect)
    inspect.add_argument("--json", action="store_true", help="machine-readable output")
    inspect.set_defaults(handler=inspect_command)

    dump = commands.add_parser("dump", help="every record, decoded, one per line")
    _data_dir_option(dump)
    dump.add_argument("--from-lsn", type=_positive_int, default=1, metavar="N", help="first LSN (default 1)")
    dump.add_argument(
        "--format", choices=("jsonl", "csv"), default="jsonl", help="output format (default jsonl)"
    )
    dump.set_defaults(handler=dump_command)


def _print_help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 0


def _data_dir_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_DATA_DIR,
        help="the data directory (default ./data); the log is in its wal/",
    )


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("LSNs start at 1")
    return value


def _wal_dir(args: argparse.Namespace) -> Path | None:
    wal_dir = Path(args.data_dir) / "wal"
    if not wal_dir.is_dir():
        print(f"invite-ledger: no write-ahead log at {wal_dir}", file=sys.stderr)
        return None
    return wal_dir


# -- inspect -----------------------------------------------------------------------------------------


def describe(found: LogInspection) -> dict[str, Any]:
    """The inspection as JSON-ready data."""
    corruption = found.corruption
    status = "corrupt" if corruption is not None else "torn_tail" if found.torn_tail is not None else "ok"
    segments = [
        {
            "name": s.name,
            "path": str(s.path),
            "first_lsn": s.first_lsn,
            "last_lsn": s.last_lsn,
            "records": s.record_count,
            "size": s.size,
            "used_bytes": s.valid_size,
            "state": "sealed" if s.sealed else "active",
            "checksum": s.status.value,
            "problem": s.problem,
        }
        for s in found.segments
    ]
    out: dict[str, Any] = {
        "wal_dir": str(found.wal_dir),
        "status": status,
        "records": sum(s.record_count for s in found.segments),
        "first_lsn": found.segments[0].first_lsn if found.segments else None,
        "last_lsn": found.last_lsn,
        "segments": segments,
        "torn_tail": None,
        "corruption": None,
        "temp_files": [p.name for p in found.temp_files],
    }
    if found.torn_tail is not None:
        torn = found.torn_tail
        out["torn_tail"] = {
            "segment": torn.segment,
            "offset": torn.offset,
            "bytes": torn.bytes,
            "reason": torn.reason,
        }
    if isinstance(corruption, WalCorruption):
        out["corruption"] = {
            "segment": corruption.segment,
            "offset": corruption.offset,
            "lsn": corruption.lsn,
            "reason": corruption.reason,
            "message": str(corruption),
        }
    elif corruption is not None:
        out["corruption"] = {"message": str(corruption)}
    return out


def inspect_command(args: argparse.Namespace) -> int:
    wal_dir = _wal_dir(args)
    if wal_dir is None:
        return 1
    found = inspect_log(wal_dir)
    data = describe(found)
    try:
        if args.json:
            sys.stdout.write(json.dumps(data, indent=2) + "\n")
        else:
            _print_inspection(data, sys.stdout)
        sys.stdout.flush()
    except BrokenPipeError:
        _quiet_broken_pipe()
    return 1 if found.corruption is not None else 0


def _quiet_broken_pipe() -> None:
    """The reader of our output went away (`| head`): stop without a traceback, also at exit's flush."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def _print_inspection(data: dict[str, Any], out: TextIO) -> None:
    out.write(f"write-ahead log {data['wal_dir']}: {data['records']} records, last LSN {data['last_lsn']}\n")
    header = f"{'segment':<26}{'LSNs':>22}{'records':>9}{'used':>11}{'size':>11}  {'state':<7} checksum\n"
    out.write(header)
    for s in data["segments"]:
        lsns = (
            f"{s['first_lsn']}-{s['last_lsn']}" if s["last_lsn"] is not None else f"{s['first_lsn']}- (empty)"
        )
        sizes = f"{s['records']:>9}{s['used_bytes']:>11}{s['size']:>11}"
        line = f"{s['name']:<26}{lsns:>22}{sizes}  {s['state']:<7} {s['checksum']}"
        out.write(line + (f": {s['problem']}" if s["problem"] else "") + "\n")
    if data["torn_tail"]:
        torn = data["torn_tail"]
        where = f"{torn['bytes']} bytes at offset {torn['offset']} of {torn['segment']}"
        out.write(f"torn tail: {where} ({torn['reason']}); never acknowledged, cut at the next start\n")
    if data["temp_files"]:
        out.write(f"half-created segments (removed at the next start): {', '.join(data['temp_files'])}\n")
    if data["corruption"]:
        out.write(f"CORRUPT: {data['corruption']['message']}\n")


# -- dump --------------------------------------------------------------------------------------------


def record_row(entry: LogEntry) -> dict[str, Any]:
    """One record as a flat dict: lsn, type name, type code, segment, then the record's fields. A type this
    build does not know, or a payload that does not decode, is shown raw rather than dropped."""
    row: dict[str, Any] = {"lsn": entry.lsn, "type_code": entry.record_type, "segment": entry.segment}
    name = TYPE_NAMES.get(entry.record_type)
    if name is not None and entry.record_type in TYPE_CLASSES:
        try:
            fields = convert.unstructure(convert.decode(entry.record_type, entry.payload))
        except Exception as exc:  # a payload this build cannot read is shown, not fatal
            row.update({"type": name, **_raw(entry.payload), "error": f"undecodable {name} record: {exc}"})
            return row
        row["type"] = name
        for key, value in fields.items():
            row[f"record_{key}" if key in row else key] = value
        return _ordered(row)
    row.update({"type": "unknown", **_raw(entry.payload)})
    return _ordered(row)


def _ordered(row: dict[str, Any]) -> dict[str, Any]:
    head = {k: row[k] for k in _BASE_COLUMNS if k in row}
    return {**head, **{k: v for k, v in row.items() if k not in head}}


def _raw(payload: bytes) -> dict[str, Any]:
    try:
        return {"payload": payload.decode("utf-8")}
    except UnicodeDecodeError:
        return {"payload_base64": base64.b64encode(payload).decode("ascii")}


def csv_columns() -> list[str]:
    """Base columns, every field of every known record type (in type-code order), then the raw columns."""
    columns = list(_BASE_COLUMNS)
    for code in sorted(TYPE_CLASSES):
        for field in attrs.fields(TYPE_CLASSES[code]):
            name = f"record_{field.name}" if field.name in _BASE_COLUMNS else field.name
            if name not in columns:
                columns.append(name)
    return columns + [c for c in _RAW_COLUMNS if c not in columns]


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return str(value)


def _rows(wal_dir: Path, from_lsn: int, last_lsn: int) -> Iterator[dict[str, Any]]:
    for entry in iter_frames(wal_dir, from_lsn, to_lsn=last_lsn):
        yield record_row(entry)


def dump_command(args: argparse.Namespace) -> int:
    wal_dir = _wal_dir(args)
    if wal_dir is None:
        return 1
    found = inspect_log(wal_dir)  # read-only: decides how far the log can be read, repairs nothing
    out = sys.stdout
    try:
        if args.format == "csv":
            columns = csv_columns()
            writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
            writer.writeheader()
            for row in _rows(wal_dir, args.from_lsn, found.last_lsn):
                writer.writerow({k: _cell(v) for k, v in row.items()})
        else:
            for row in _rows(wal_dir, args.from_lsn, found.last_lsn):
                out.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n")
        out.flush()
    except BrokenPipeError:  # `| head`: the reader has seen enough
        _quiet_broken_pipe()
        return 0
    except WalError as exc:
        print(f"invite-ledger: {exc}", file=sys.stderr)
        return 1
    if found.torn_tail is not None:
        torn = found.torn_tail
        print(
            f"note: {torn.bytes} bytes of an unacknowledged write at offset {torn.offset} of {torn.segment} "
            "are not shown; the next start cuts them",
            file=sys.stderr,
        )
    if found.corruption is not None:
        print(f"invite-ledger: stopped at LSN {found.last_lsn}: {found.corruption}", file=sys.stderr)
        return 1
    return 0
