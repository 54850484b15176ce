"""The staff's slash commands and the join-log channel, on top of the Discord adapter and the ledger.

    staff = commands.register(adapter, ledger)     # installed on every client the adapter starts
    poster = JoinLogPoster(adapter, channel_id, durable_receive)   # optional; run it in the front task group

`StaffCommands.install(client)` adds the commands to one client directly (what `register` arranges for
every client). What they need from the ledger and from Discord is in `commands.ports`.
"""

from __future__ import annotations

from typing import Any

from commands.join_log import JoinLogPoster
from commands.ports import CommandHost, LedgerPort
from commands.staff import StaffCommands


def register(adapter: CommandHost, ledger: LedgerPort, **options: Any) -> StaffCommands:
    """Create the commands and have `adapter` (a `DiscordAdapter`) install them on every client it starts."""
    staff = StaffCommands(ledger, adapter, **options)
    adapter.add_client_setup(staff.install)
    return staff


__all__ = ["JoinLogPoster", "StaffCommands", "register"]
