"""The Discord side of the service: the interactions.py 5.16 adapter that implements the gateway port.

See `adapter.py` for how it runs and what it relies on; `parse.py` turns Discord JSON into domain values and
`stream.py` is the ordered, bounded event stream the attribution actor reads.
"""

from __future__ import annotations

from service.discord_adapter.adapter import (
    DEFAULT_API_BASE,
    Backoff,
    ClientSetup,
    DiscordAdapter,
    GatewayFatalError,
)

__all__ = ["DEFAULT_API_BASE", "Backoff", "ClientSetup", "DiscordAdapter", "GatewayFatalError"]
