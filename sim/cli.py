"""`invite-ledger sim`: serve the Discord simulator with the demo guild until Ctrl-C.

Prints the REST base URL and token to point a bot at; `--script` plays a short join scenario once a bot has
connected (or after `--wait-for-bot` seconds, in which case the joins happen while no bot is listening).
`--duration` makes it stop by itself (used by tests and scripted demos).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from typing import Any

from sim.demo import DemoWorld, populate_demo_guild, run_join_script
from sim.server import DISCORD_HEARTBEAT_INTERVAL_MS, SimServer


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "sim",
        help="run the local Discord simulator (REST + gateway) with a demo guild",
        description="Serve a Discord-compatible API on 127.0.0.1 that interactions.py can log into.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    parser.add_argument(
        "--port", type=int, default=8765, help="port (0: any free port; default: %(default)s)"
    )
    parser.add_argument("--token", default=None, help="bot token to accept (default: a random one)")
    parser.add_argument(
        "--heartbeat-ms",
        type=int,
        default=DISCORD_HEARTBEAT_INTERVAL_MS,
        help="gateway heartbeat interval sent in HELLO (default: %(default)s, Discord's)",
    )
    parser.add_argument(
        "--script", action="store_true", help="play a short join scenario once a bot connects"
    )
    parser.add_argument(
        "--wait-for-bot",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="with --script: how long to wait for a bot before playing anyway (default: %(default)s)",
    )
    parser.add_argument(
        "--script-pause",
        type=float,
        default=0.5,
        metavar="SECONDS",
        help="with --script: pause between steps (default: %(default)s)",
    )
    parser.add_argument(
        "--duration", type=float, default=None, metavar="SECONDS", help="stop by itself after this long"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        asyncio.run(serve(args))
    except KeyboardInterrupt:
        print("simulator stopped", flush=True)
    return 0


async def serve(args: argparse.Namespace) -> None:
    options: dict[str, Any] = {"heartbeat_interval_ms": args.heartbeat_ms}
    if args.token:
        options["token"] = args.token
    async with SimServer.running(host=args.host, port=args.port, **options) as sim:
        demo = populate_demo_guild(sim)
        print("Discord simulator listening", flush=True)
        print(f"  REST base URL: {sim.base_url}", flush=True)
        print(f"  gateway:       {sim.gateway.ws_url}", flush=True)
        print(f"  token:         {sim.token}", flush=True)
        print(
            f"  guild:         {demo.guild.name} ({demo.guild.id}), join log #{demo.join_log.name}",
            flush=True,
        )
        print(
            f'  point a bot at it: interactions.api.http.route.Route.BASE = "{sim.base_url}" '
            "and Client(token=<the token above>)",
            flush=True,
        )
        print("Press Ctrl-C to stop.", flush=True)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(args.duration):
                if args.script:
                    await _play_script(sim, demo, args.wait_for_bot, args.script_pause)
                await asyncio.Event().wait()  # serve until Ctrl-C or --duration
        print(f"stopping after --duration {args.duration:g} s", flush=True)


async def _play_script(sim: SimServer, demo: DemoWorld, wait_for_bot: float, pause_s: float) -> None:
    try:
        await sim.wait_ready(timeout=wait_for_bot)
        print("bot connected; playing the join scenario", flush=True)
    except TimeoutError:
        print(f"no bot connected within {wait_for_bot:g} s; playing the join scenario anyway", flush=True)
    await run_join_script(sim, demo, pause_s=pause_s, say=lambda line: print(line, flush=True))
    print("join scenario done; still serving", flush=True)
