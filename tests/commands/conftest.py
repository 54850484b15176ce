"""Fixtures for the slash-command tests: a running simulator.

The commands and the adapter run on interactions.py, which is asyncio-only: every async test in this folder
runs on asyncio, not on the project-wide asyncio+trio parametrization.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from sim import SimServer


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def sim(anyio_backend: str) -> AsyncIterator[SimServer]:
    # A short heartbeat so heartbeats happen within a test; everything else as on Discord.
    async with SimServer.running(heartbeat_interval_ms=300) as server:
        yield server
    assert server.stats.unhandled_requests == [], "the client called routes the simulator does not implement"
