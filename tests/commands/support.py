"""Helpers for tests that run the real interactions.py client, through `DiscordAdapter`, against `sim/`.

asyncio only: interactions.py (and the aiohttp simulator) run on asyncio, so these tests do not take part in
the project-wide trio parametrization.
"""

# Helpers take `timeout=` like the simulator's scripting API; each applies it with anyio.fail_after.

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.abc
from interactions.api.http.route import Route

from service.app import Service
from service.attribution.config import AttributionConfig
from service.attribution_actor import Durable
from service.config import load_config
from service.discord_adapter import Backoff, DiscordAdapter
from service.events import Event
from sim import SimServer

#: Attribution timing for the simulator on 127.0.0.1 (its gateway events arrive within milliseconds).
FAST = AttributionConfig(
    gateway_latency=timedelta(milliseconds=50),
    clock_skew=timedelta(milliseconds=50),
    min_fetch_gap=timedelta(milliseconds=1),
    max_join_wait=timedelta(seconds=5),
)


def service_behind_client(
    sim: SimServer,
    data_dir: Path,
    durable_out: anyio.abc.ObjectSendStream[Durable],
    core: AttributionConfig = FAST,
) -> tuple[Service, DiscordAdapter]:
    """The real service with the real client as its gateway, configured for `sim` (not started)."""
    env = {
        "INVITE_LEDGER_DATA_DIR": str(data_dir),
        "DISCORD_TOKEN": sim.token,
        "INVITE_LEDGER_DISCORD_API_BASE": sim.base_url,
    }
    config = load_config(None, env)
    adapter = DiscordAdapter.from_config(config, backoff=Backoff(initial_s=0.05, max_s=0.2))
    service = Service.build(config, adapter, front=adapter.run, core=core, durable_out=durable_out)
    return service, adapter


E = TypeVar("E")


class Collected:
    """Everything the adapter put on its event stream, read by a background task."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._changed = anyio.Event()

    async def drain(self, adapter: DiscordAdapter) -> None:
        async with adapter.events as events:
            async for event in events:
                self.events.append(event)
                self._changed.set()
                self._changed = anyio.Event()

    def of(self, cls: type[E]) -> list[E]:
        return [e for e in self.events if isinstance(e, cls)]

    async def wait_for(
        self, cls: type[E], count: int = 1, timeout: float = 5.0, where: Callable[[E], bool] | None = None
    ) -> list[E]:
        with anyio.fail_after(timeout):
            while True:
                found = [e for e in self.of(cls) if where is None or where(e)]
                if len(found) >= count:
                    return found
                await self._changed.wait()


@contextlib.asynccontextmanager
async def running_adapter(
    sim: SimServer, *, adapter: DiscordAdapter | None = None, collect: bool = True, **options: Any
) -> AsyncIterator[tuple[DiscordAdapter, Collected]]:
    """A `DiscordAdapter` (`adapter`, or one made with `options`) logged into `sim` and Ready; stopped by
    cancelling its task afterwards. Without `collect`, nobody reads its events (fine for a short test)."""
    options.setdefault("backoff", Backoff(initial_s=0.05, max_s=0.2))
    setups = options.pop("setups", ())
    if adapter is None:
        adapter = DiscordAdapter(token=sim.token, api_base_url=sim.base_url, **options)
    for setup in setups:
        adapter.add_client_setup(setup)
    collected = Collected()
    base_before = Route.BASE
    async with anyio.create_task_group() as tg:
        if collect:
            tg.start_soon(collected.drain, adapter)
        with anyio.fail_after(10):
            await tg.start(adapter.run)
        yield adapter, collected
        tg.cancel_scope.cancel()
    adapter.events.close()
    assert Route.BASE == base_before, "the adapter must put Route.BASE back"
    assert adapter.client is None or adapter.client.http.closed, "the HTTP session must be closed"
