"""A per-route request budget answered the way Discord does: `X-RateLimit-*` headers on every answer of the
route, and beyond the budget a 429 with a JSON `retry_after`, a `Retry-After` header and `X-RateLimit-*`.

Fixed windows per key (one key per guild, as Discord counts per major parameter), started by the first
request: simple to reason about in tests ("budget 2 per 1 s: the third request in that second gets a 429").

`GlobalBudget` is Discord's global limit on top: 50 requests per second per bot token over every route but
the interaction endpoints, answered beyond it with a 429 whose body says `"global": true` and whose headers
carry `X-RateLimit-Global` and `X-RateLimit-Scope: global` (no bucket headers: it is no route's).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import attrs


@attrs.define
class Decision:
    allowed: bool
    headers: dict[str, str]
    retry_after: float = 0.0
    is_global: bool = False

    def body(self) -> dict[str, Any]:
        return {
            "message": "You are being rate limited.",
            "retry_after": self.retry_after,
            "global": self.is_global,
            "code": 0,
        }


@attrs.define
class RouteBudget:
    """`limit` requests per `window_s` seconds per key; `limit` 0 answers every request with a 429."""

    limit: int
    window_s: float
    bucket: str
    clock: Callable[[], float] = time.monotonic
    _windows: dict[str, tuple[float, int]] = attrs.field(factory=dict)
    rejected: int = 0

    def take(self, key: str) -> Decision:
        now = self.clock()
        start, used = self._windows.get(key, (now, 0))
        if now - start >= self.window_s:
            start, used = now, 0
        reset_after = max(0.0, start + self.window_s - now)
        allowed = used < self.limit
        if allowed:
            used += 1
        self._windows[key] = (start, used)
        headers = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(max(0, self.limit - used)),
            "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
            "X-RateLimit-Reset-After": f"{reset_after:.3f}",
            "X-RateLimit-Bucket": self.bucket,
        }
        if allowed:
            return Decision(True, headers)
        self.rejected += 1
        headers["Retry-After"] = str(max(1, math.ceil(reset_after)))
        headers["X-RateLimit-Scope"] = "user"
        return Decision(False, headers, retry_after=round(reset_after, 3))


#: Discord's global limit per bot token (https://discord.com/developers/docs/topics/rate-limits#global-rate-limit).
DISCORD_GLOBAL_LIMIT = 50


@attrs.define
class GlobalBudget:
    """`limit` requests per `window_s` seconds over all routes; beyond that a global 429."""

    limit: int = DISCORD_GLOBAL_LIMIT
    window_s: float = 1.0
    clock: Callable[[], float] = time.monotonic
    _window: tuple[float, int] = (-math.inf, 0)
    rejected: int = 0

    def take(self) -> Decision | None:
        """None when the request may go on; else the 429 to answer it with."""
        now = self.clock()
        start, used = self._window
        if now - start >= self.window_s:
            start, used = now, 0
        if used < self.limit:
            self._window = (start, used + 1)
            return None
        self.rejected += 1
        reset_after = max(0.0, start + self.window_s - now)
        headers = {
            "Retry-After": str(max(1, math.ceil(reset_after))),
            "X-RateLimit-Global": "true",
            "X-RateLimit-Scope": "global",
        }
        return Decision(False, headers, retry_after=round(reset_after, 3), is_global=True)
