"""`invite-ledger sim` and the demo guild's join scenario."""

from __future__ import annotations

import argparse

import pytest

from sim import MemberFlag, SimServer
from sim.cli import register
from sim.demo import populate_demo_guild, run_join_script


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="invite-ledger")
    register(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def test_sim_command_serves_prints_how_to_connect_and_plays_the_script(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = "sim --port 0 --token t0ken --script --wait-for-bot 0.1 --script-pause 0.01 --duration 1".split()
    args = parse(argv)
    assert args.handler(args) == 0
    out = capsys.readouterr().out
    assert "REST base URL: http://127.0.0.1:" in out and "/api/v10" in out
    assert "token:         t0ken" in out and "gateway:       ws://127.0.0.1:" in out
    assert "no bot connected within 0.1 s; playing the join scenario anyway" in out
    assert "john_doe rejoins through abc123XYZ" in out and "join scenario done" in out
    assert "stopping after --duration 1 s" in out


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # the simulator is an aiohttp (asyncio) server
@pytest.mark.anyio
async def test_demo_scenario_leaves_the_expected_ground_truth(sim: SimServer) -> None:
    demo = populate_demo_guild(sim)
    said: list[str] = []
    members = await run_join_script(sim, demo, pause_s=0, say=said.append)
    assert len(said) == 6
    assert (demo.invites["TravisP"].uses, demo.invites["MayaK"].uses, demo.guild.vanity_uses) == (7, 3, 4)
    john_rejoined = members[-1]
    assert john_rejoined.joined_via == "abc123XYZ" and john_rejoined.flags & MemberFlag.DID_REJOIN
    assert [m.joined_via for m in members[1:4]] == ["maya2024", "vanity", None]
