"""Restarts: what the log tells the attribution core about each guild before the gateway says anything.

`restore_events(records)` reads the log's records (in log order) and returns one `GuildRestored` event per
guild; feed them to the `Attributor` before any other event. Each carries:

- the last logged invite snapshot: the counts the joins after it are compared against;
- the joins logged after it (and those stamped within `restore_margin` before it, which may have been decided
  while their use still counted after it): their invites explain part of the counts seen after the restart;
- everyone who ever joined (the rejoin flag) and who is present (a second GUILD_MEMBER_ADD for them is a
  duplicate, and they are not mistaken for joins that happened while the bot was down);
- the last time the log shows the guild.

The core then treats the time since the snapshot as blind until `GuildAvailable` brings the member list: the
members who joined after the snapshot (less `restore_margin`) without a join record become offline joins,
compared against the snapshot and a fresh fetch — offline_reconciled when the counts name one invite for
them, offline_unknown otherwise. This assumes nobody who joined while the bot was down has already left
again: such a member is in no list, and their use would look like someone else's. A guild with nothing in
the log yet gets no `GuildRestored`: the bot cannot know since when its joins were the bot's to record.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import attrs

from service.attribution.config import AttributionConfig
from service.events import GuildRestored, RecordedMember
from service.records import InviteSnapshotTaken, JoinRecorded, MemberLeft, Record, UserErased


@attrs.define
class _GuildLog:
    name: str = ""
    snapshot: InviteSnapshotTaken | None = None
    recent: list[JoinRecorded] = attrs.Factory(list)
    known: dict[str, None] = attrs.Factory(dict)  # insertion-ordered set
    present: dict[str, datetime] = attrs.Factory(dict)
    last_seen: datetime | None = None

    def saw(self, when: datetime | None) -> None:
        if when is not None and (self.last_seen is None or when > self.last_seen):
            self.last_seen = when


def restore_events(records: Iterable[Record], config: AttributionConfig | None = None) -> list[GuildRestored]:
    """One `GuildRestored` per guild found in `records` (the whole log, oldest first)."""
    margin = (config or AttributionConfig()).restore_margin
    guilds: dict[str, _GuildLog] = {}
    for record in records:
        guild_id = getattr(record, "guild_id", None)
        if guild_id is None:
            continue
        log = guilds.setdefault(guild_id, _GuildLog())
        if isinstance(record, JoinRecorded):
            log.name = record.guild_name or log.name
            log.known[record.user_id] = None
            log.present[record.user_id] = record.timestamp
            log.recent.append(record)
            log.saw(record.timestamp)
            log.saw(record.decided_at)
        elif isinstance(record, MemberLeft):
            log.present.pop(record.user_id, None)
            log.saw(record.timestamp)
        elif isinstance(record, InviteSnapshotTaken):
            log.name = record.guild_name or log.name
            log.snapshot = record
            log.recent = _recent(log.recent, record.timestamp - margin)
            log.saw(record.timestamp)
        elif isinstance(record, UserErased):  # erased means forgotten, here too
            log.present.pop(record.user_id, None)
            log.known.pop(record.user_id, None)
            log.recent = [j for j in log.recent if j.user_id != record.user_id]
    return [
        GuildRestored(
            guild_id=guild_id,
            guild_name=log.name,
            snapshot=log.snapshot,
            last_seen=log.last_seen,
            recent_joins=tuple(log.recent),
            known_user_ids=tuple(log.known),
            present=tuple(RecordedMember(user, joined) for user, joined in log.present.items()),
        )
        for guild_id, log in guilds.items()
    ]


def _recent(joins: list[JoinRecorded], since: datetime) -> list[JoinRecorded]:
    return [join for join in joins if join.timestamp >= since]


__all__ = ["restore_events"]
