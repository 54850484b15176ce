"""Fixtures for the simulator's tests: a running simulator, a raw gateway probe, and the real interactions.py
client pointed at the simulator.

These tests run on asyncio only: the simulator is an aiohttp server and interactions.py is asyncio-only, so
the project-wide trio parametrization does not apply here.
"""

# Helpers take `timeout=` like the simulator's own scripting API; each applies it with anyio.fail_after.

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable
from typing import Any

import aiohttp
import anyio
import pytest
from interactions import Client, Intents, Listener, listen
from interactions.api.events import BaseEvent
from interactions.api.http.route import Route

from sim import SimServer

ASYNCIO_ONLY = [pytest.mark.anyio, pytest.mark.parametrize("anyio_backend", ["asyncio"])]


@pytest.fixture
async def sim(anyio_backend: str) -> AsyncIterator[SimServer]:
    # A short heartbeat so heartbeats and acks happen within a test; the rest as on Discord.
    async with SimServer.running(heartbeat_interval_ms=300) as server:
        yield server
    assert server.stats.unhandled_requests == [], "the client called routes the simulator does not implement"


@pytest.fixture
async def http(anyio_backend: str) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


class GatewayProbe:
    """A hand-driven gateway client, for checking the protocol frame by frame."""

    def __init__(self, session: aiohttp.ClientSession, url: str, *, close_code: int = 1000) -> None:
        self.session, self.url, self.close_code = session, url, close_code
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.hello: dict[str, Any] = {}

    async def __aenter__(self) -> GatewayProbe:
        self.ws = await self.session.ws_connect(f"{self.url}?v=10&encoding=json", autoclose=False)
        self.hello = await self.recv()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.ws is not None:
            await self.ws.close(code=self.close_code)

    async def send(self, op: int, d: Any) -> None:
        assert self.ws is not None
        await self.ws.send_str(json.dumps({"op": op, "d": d}))

    async def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        """The next frame; a close arrives as {"close": code}."""
        assert self.ws is not None
        with anyio.fail_after(timeout):
            msg = await self.ws.receive()
        if msg.type == aiohttp.WSMsgType.TEXT:
            return dict(json.loads(msg.data))
        if msg.type == aiohttp.WSMsgType.CLOSE:
            return {"close": msg.data}
        return {"close": None, "type": str(msg.type)}

    async def dispatch(self, name: str, timeout: float = 5.0) -> dict[str, Any]:
        """Skip frames until the dispatch `name`; return it."""
        with anyio.fail_after(timeout):
            while True:
                frame = await self.recv(timeout)
                assert "close" not in frame, f"closed while waiting for {name}: {frame}"
                if frame.get("t") == name:
                    return frame

    async def identify(self, token: str, intents: int) -> dict[str, Any]:
        await self.send(2, {"token": token, "intents": intents, "properties": {}, "shard": [0, 1]})
        return await self.dispatch("READY")


class EventLog:
    """Collects the client's events by class, so a test can wait for "the second Ready" with a timeout."""

    def __init__(self) -> None:
        self.events: dict[type[BaseEvent], list[Any]] = defaultdict(list)
        self._changed = asyncio.Event()

    def listeners(self, *event_classes: type[BaseEvent]) -> list[Listener]:
        made = []
        for event_class in event_classes:

            async def record(event: Any, _cls: type[BaseEvent] = event_class) -> None:
                self.events[_cls].append(event)
                self._changed.set()

            made.append(listen(event_class)(record))
        return made

    async def wait_for(self, event_class: type[BaseEvent], count: int = 1, timeout: float = 5.0) -> list[Any]:
        with anyio.fail_after(timeout):
            while len(self.events[event_class]) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.events[event_class]


@contextlib.asynccontextmanager
async def running_client(
    sim: SimServer,
    *,
    commands: Iterable[Any] = (),
    listeners: Iterable[Listener] = (),
    wait_ready: bool = True,
    **options: Any,
) -> AsyncIterator[Client]:
    """The real interactions.py client logged into `sim`, stopped by cancelling `astart()` afterwards
    (client.stop() hangs in 5.16.0). Route.BASE is a class attribute: it is put back on the way out.
    `client.astart_returned` (an anyio.Event) is set if astart() comes back by itself."""
    previous_base = Route.BASE
    Route.BASE = sim.base_url
    client = Client(
        intents=Intents.DEFAULT | Intents.GUILD_MEMBERS,
        token=sim.token,
        sync_interactions=True,  # GET then PUT of the commands; the sim echoes ids
        delete_unused_application_cmds=True,
        fetch_members=False,  # no chunking before Ready
        send_command_tracebacks=False,
        **options,
    )
    for command in commands:
        client.add_command(command)  # slash commands and component callbacks alike
    for listener in listeners:
        client.add_listener(listener)
    astart_returned = client.astart_returned = anyio.Event()  # type: ignore[attr-defined]

    async def run_client() -> None:
        await client.astart()
        astart_returned.set()

    try:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(run_client)
            if wait_ready:
                await sim.wait_ready(timeout=10)
            yield client
            tasks.cancel_scope.cancel()
    finally:
        Route.BASE = previous_base
        # astart()'s own clean-up is cut short by the cancellation; close the HTTP session it opened.
        with anyio.CancelScope(shield=True):
            await client.http.close()
