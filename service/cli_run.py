"""`invite-ledger run` (the bot, or the demo when no token is set) and `invite-ledger config ...`."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import attrs

from service.config import (
    CONFIG_PATH_ENV,
    Config,
    ConfigError,
    config_check,
    load_config,
    options_markdown,
    render_example,
)


def load_for_cli(args: argparse.Namespace) -> Config:
    """The configuration for a command: --config, else INVITE_LEDGER_CONFIG, else defaults + environment;
    --data-dir overrides the data directory."""
    path = args.config or os.environ.get(CONFIG_PATH_ENV)
    config = load_config(Path(path) if path else None, os.environ)
    if getattr(args, "data_dir", None):
        config = attrs.evolve(config, storage=attrs.evolve(config.storage, data_dir=str(args.data_dir)))
    return config


def _run(args: argparse.Namespace) -> int:
    try:
        config = load_for_cli(args)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    from service.logs import register_secret, setup_logging

    setup_logging(format=config.logging.format, level=config.logging.level)
    # interactions.py logs every command call at INFO with the whole Member object: keep its warnings only.
    logging.getLogger("interactions").setLevel(max(logging.WARNING, logging.getLogger().level))
    for secret in (config.discord.token, config.backup.s3.secret_access_key, config.backup.s3.session_token):
        register_secret(secret)
    for warning in config.warnings():
        print(f"warning: {warning}", file=sys.stderr)
    if config.discord.token is None or args.demo:
        from service import demo

        print("no DISCORD_TOKEN: running the demo against the local Discord simulator (sim/)")
        return demo.main(config, pause_s=args.demo_pause)
    import anyio

    from recovery.startup import StartupRefused
    from service.bot import run_bot

    try:
        anyio.run(run_bot, config, backend="asyncio")  # interactions.py is asyncio-only
    except StartupRefused as exc:
        print(exc, file=sys.stderr)
        return 3
    return 0


def _config_check(args: argparse.Namespace) -> int:
    code, lines = config_check(Path(args.file), os.environ)
    for line in lines:
        print(line, file=sys.stderr if code else sys.stdout)
    return code


def _config_options(args: argparse.Namespace) -> int:
    print(render_example() if args.example else options_markdown())
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = subparsers.add_parser(
        "run",
        help="run the bot (with no DISCORD_TOKEN: the demo against the local simulator)",
        description="Recover, then run the bot. Without a token, run the demo against sim/ and exit.",
    )
    run.add_argument("--config", help=f"TOML configuration file (default: ${CONFIG_PATH_ENV})")
    run.add_argument("--data-dir", help="data directory (overrides storage.data_dir)")
    run.add_argument("--demo", action="store_true", help="run the demo even if a token is set")
    run.add_argument(
        "--demo-pause",
        type=float,
        default=1.5,
        help="seconds between the demo's joins (closer than ~1 s on two invites: ambiguous)",
    )
    run.set_defaults(handler=_run)

    config = subparsers.add_parser("config", help="check a configuration file, list the options")
    sub = config.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    check = sub.add_parser("check", help="validate a configuration file (errors name the key)")
    check.add_argument("file")
    check.set_defaults(handler=_config_check)
    options = sub.add_parser("options", help="every option with its default and documentation")
    options.add_argument("--example", action="store_true", help="as an example TOML file")
    options.set_defaults(handler=_config_options)
