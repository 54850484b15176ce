"""The `invite-ledger` command line. Each room adds its own subcommands through a `register(subparsers)`
function in its module; this file only collects them, so rooms never edit each other's code."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Modules that contribute subcommands, in the order they appear in --help. A module may be missing
# while its issue is open; it is then simply skipped.
_COMMAND_MODULES = (
    "service.cli_run",  # run (the bot, or the demo when no token is set), config check
    "service.cli_wal",  # wal inspect, wal dump
    "service.cli_data",  # export, lookup
    "recovery.cli",  # checkpoint/status, rebuild, verify, restore
    "sim.cli",  # sim (the local Discord simulator)
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="invite-ledger",
        description="Records which invite and which staff member brought every member in, "
        "in a crash-safe write-ahead log.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 0
    try:
        result = handler(args)
    except KeyboardInterrupt:
        print("interrupted; nothing was left half-done", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
