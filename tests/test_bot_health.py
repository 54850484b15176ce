"""The bot as `invite-ledger run` starts it (recovery, lock, adapter, commands) with the health endpoint on:
/healthz says ready once recovery and the Discord login are done, and /metrics carries the service's figures.

asyncio only: interactions.py runs on asyncio alone.
"""

from __future__ import annotations

import socket
import urllib.request
from pathlib import Path

import anyio
import attrs
import pytest

from service.bot import run_bot
from service.config import Secret, load_config
from sim import SimServer

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.read().decode()


async def test_healthz_is_ready_after_recovery_and_login_and_metrics_are_served(tmp_path: Path) -> None:
    port = _free_port()
    config = load_config(
        None,
        {
            "INVITE_LEDGER_DATA_DIR": str(tmp_path / "data"),
            "INVITE_LEDGER_HTTP_ENABLED": "true",
            "INVITE_LEDGER_HTTP_PORT": str(port),
        },
    )
    async with SimServer.running(host="127.0.0.1", port=0) as sim:
        sim.add_guild("PipVault")
        discord = attrs.evolve(config.discord, token=Secret(sim.token), api_base_url=sim.base_url)
        config = attrs.evolve(config, discord=discord)
        async with anyio.create_task_group() as tg:
            with anyio.fail_after(20):
                service = await tg.start(run_bot, config)
            status, body = await anyio.to_thread.run_sync(_get, f"http://127.0.0.1:{port}/healthz")
            assert (status, body.strip()) == (200, "ready")
            status, metrics = await anyio.to_thread.run_sync(_get, f"http://127.0.0.1:{port}/metrics")
            assert status == 200
            lines = dict(line.rsplit(" ", 1) for line in metrics.splitlines() if line and line[0] != "#")
            assert float(lines["invite_ledger_ready"]) == 1
            assert float(lines["invite_ledger_recovery_seconds"]) > 0
            assert "invite_ledger_durable_lsn" in lines and "invite_ledger_applied_lsn" in lines
            assert any(name.startswith("invite_ledger_shipped_lsn{") for name in lines)
            assert token_absent(metrics, sim.token)
            service.stop()


def token_absent(text: str, token: str) -> bool:
    return token not in text
