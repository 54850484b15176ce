"""Invite attribution: which invite, and so which staff member, brought each member in. Pure logic.

Placeholder docstring; the full API description is written below once the API has settled.
"""

from __future__ import annotations

from service.attribution.config import AttributionConfig
from service.attribution.effects import Effect, FetchInvites, LogRecord, WakeAt
from service.attribution.facade import Attributor
from service.attribution.reconcile import restore_events

__all__ = [
    "AttributionConfig",
    "Attributor",
    "Effect",
    "FetchInvites",
    "LogRecord",
    "WakeAt",
    "restore_events",
]
