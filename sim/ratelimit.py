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


def _spend(
    windows: dict[str, tuple[float, int]], key: str, now: float, limit: int, window_s: float
) -> tuple[bool, int, float]:
    """Spend one request of `key`'s fixed window (started by its first request): whether it is allowed, the
    requests used in the window, and the seconds until the window resets."""
    start, used = windows.get(key, (now, 0))
    if now - start >= window_s:
        start, used = now, 0
    allowed = used < limit
    if allowed:
        used += 1
    windows[key] = (start, used)
    return allowed, used, max(0.0, start + window_s - now)


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
        allowed, used, reset_after = _spend(self._windows, key, self.clock(), self.limit, self.window_s)
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
    _windows: dict[str, tuple[float, int]] = attrs.field(factory=dict)  # one: the token's
    rejected: int = 0

    def take(self) -> Decision | None:
        """None when the request may go on; else the 429 to answer it with."""
        allowed, _, reset_after = _spend(self._windows, "", self.clock(), self.limit, self.window_s)
        if allowed:
            return None
        self.rejected += 1
        headers = {
            "Retry-After": str(max(1, math.ceil(reset_after))),
            "X-RateLimit-Global": "true",
            "X-RateLimit-Scope": "global",
        }
        return Decision(False, headers, retry_after=round(reset_after, 3), is_global=True)
