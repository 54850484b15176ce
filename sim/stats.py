"""What the simulator saw (counters a test can assert on) and a way to wait for the next change."""

# The scripting API takes `timeout=` arguments by design (the API; test scripts read better with a
# deadline argument than with a cancel scope around every wait).
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
from collections.abc import Callable

import attrs


@attrs.define
class ResumeRecord:
    session_id: str
    from_seq: int
    #: How many missed dispatches were sent again before RESUMED.
    replayed: int


@attrs.define
class RequestRecord:
    method: str
    path: str
    status: int
    at: float  # time.monotonic()


@attrs.define
class SimStats:
    connections_opened: int = 0
    identifies: int = 0
    resumes: list[ResumeRecord] = attrs.field(factory=list)
    failed_resumes: int = 0
    heartbeats: int = 0
    heartbeat_acks: int = 0
    invalid_sessions_sent: int = 0
    reconnects_requested: int = 0
    dispatches: int = 0
    rest_requests: int = 0
    rate_limited: int = 0
    #: Of those, 429s for the global limit (every route together), not a route's.
    globally_rate_limited: int = 0
    #: Requests to routes the simulator does not implement (the test should fail loudly on these).
    unhandled_requests: list[str] = attrs.field(factory=list)
    #: time.monotonic() of the last GET /users/@me (a client logging in), identify and command-sync request.
    last_login_at: float | None = None
    last_identify_at: float | None = None
    last_command_sync_at: float | None = None


class ChangeNotifier:
    """Wakes every waiter whenever the simulator's state changes, so tests wait on conditions, not sleeps."""

    def __init__(self) -> None:
        self._changed = asyncio.Event()

    def notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_until(
        self,
        predicate: Callable[[], bool],
        timeout: float,
        what: str,
        *,
        poll_s: float | None = None,
    ) -> None:
        """Return once `predicate()` is true; raise TimeoutError naming `what` after `timeout` seconds.
        `poll_s` re-checks at least that often, for conditions that depend on time passing."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
            changed = self._changed
            step = remaining if poll_s is None else min(remaining, poll_s)
            try:
                await asyncio.wait_for(changed.wait(), step)
            except TimeoutError:
                pass
