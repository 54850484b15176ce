"""State of the paginated `/view_invite_logs` answers, between button presses.

Each answer gets a random key; its buttons' custom ids carry the key and the direction
(`ilogs:<key>:next`). The state holds the query (guild, filters) and the keyset cursors of the pages seen, so
"Previous" goes back exactly and "Next" continues where the page ended, even while joins arrive. States
expire after `ttl_s` and the store keeps at most `capacity` of them (the oldest go first): a press on an
expired answer gets a message saying to run the command again.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from service.projection.queries import JoinCursor

PREFIX = "ilogs"
NEXT, PREVIOUS = "next", "prev"


@attrs.define
class LogQuery:
    guild_id: str
    owner_id: str  # who ran the command (only they may turn its pages)
    filters: Mapping[str, Any]  # join_logs keyword arguments (user_id, invite_code, staff_id, since)
    labels: tuple[str, ...]  # the filters as shown in the title
    befores: list[JoinCursor | None] = attrs.field(factory=lambda: [None])  # `before` of each page seen
    next_cursor: JoinCursor | None = None  # where the page now shown ended
    expires_at: float = 0.0

    @property
    def page_number(self) -> int:
        return len(self.befores)


def custom_id(key: str, direction: str) -> str:
    return f"{PREFIX}:{key}:{direction}"


def parse_custom_id(value: str) -> tuple[str, str] | None:
    parts = value.split(":")
    if len(parts) != 3 or parts[0] != PREFIX or parts[2] not in (NEXT, PREVIOUS):
        return None
    return parts[1], parts[2]


@attrs.define
class PageStore:
    ttl_s: float = 15 * 60
    capacity: int = 1000
    clock: Callable[[], float] = time.monotonic
    _states: OrderedDict[str, LogQuery] = attrs.field(factory=OrderedDict)

    def add(self, query: LogQuery) -> str:
        self._expire()
        key = secrets.token_urlsafe(9)
        query.expires_at = self.clock() + self.ttl_s
        self._states[key] = query
        while len(self._states) > self.capacity:
            self._states.popitem(last=False)
        return key

    def get(self, key: str) -> LogQuery | None:
        self._expire()
        query = self._states.get(key)
        if query is not None:
            query.expires_at = self.clock() + self.ttl_s  # in use: keep it
            self._states.move_to_end(key)
        return query

    def __len__(self) -> int:
        return len(self._states)

    def _expire(self) -> None:
        now = self.clock()
        while self._states:
            key, oldest = next(iter(self._states.items()))
            if oldest.expires_at > now:
                break
            del self._states[key]
