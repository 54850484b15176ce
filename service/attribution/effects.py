"""What the attribution core asks its actor to do. The core performs no I/O; the actor performs these."""

from __future__ import annotations

from datetime import datetime

import attrs

from service.records import Record


@attrs.frozen
class FetchInvites:
    """Fetch the guild's invites (GET /guilds/{id}/invites) and its vanity URL's uses, then feed back exactly
    one of `InvitesFetched`, `FetchRateLimited` or `FetchFailed` carrying the same `request_id`. At most one
    fetch per guild is requested at a time; send the request promptly (the core counts from now)."""

    guild_id: str
    request_id: int


@attrs.frozen
class LogRecord:
    """Append this record to the write-ahead log. Records come in the order they must be written."""

    record: Record


@attrs.frozen
class WakeAt:
    """Feed `ClockTick` at or after `at`. The latest WakeAt replaces earlier ones; ticks that come early or
    extra are harmless. `Attributor.next_wake()` gives the same time on demand."""

    at: datetime


Effect = FetchInvites | LogRecord | WakeAt
