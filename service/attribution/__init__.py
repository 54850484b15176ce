"""Invite attribution: which invite, and so which staff member, brought each member in. Pure logic.

No I/O, no Discord library, no clock reads: events in (`service.events`), effects out (`effects.py`), like
h11. Giving a staff member credit for someone else's join is the worst error this product can make, so a join
is credited only when *every* way of explaining the invite counts the bot saw names the same invite; anything
less is recorded as ambiguous with its candidates, and nobody is credited.

The API, for the actor that drives it
-------------------------------------

    core = Attributor(AttributionConfig(...))
    for event in restore_events(wal_records, config):     # at start-up, before anything else
        perform(core.handle(event))
    loop:
        event = next gateway event / fetch answer / ClockTick when core.next_wake() has come
        perform(core.handle(event))

`Attributor.handle(event) -> list[Effect]` takes one event and returns the effects to perform, in order:

- `FetchInvites(guild_id, request_id)`: GET /guilds/{id}/invites (and the vanity URL's uses), then feed back
  exactly one answer carrying the same request_id: `InvitesFetched` (at = when the answer arrived),
  `FetchRateLimited` (Discord's retry_after, in seconds) or `FetchFailed` (error, timeout, the library's
  None). Send the request promptly: the core counts the request as sent at the `at` of the event that asked
  for it. At most one fetch per guild is asked at a time; none while a retry_after or a backoff runs. An
  answer with another request_id (say, after `fetch_timeout`) is ignored.
- `LogRecord(record)`: append to the WAL, in the order given. Join records come in each guild's arrival
  order; a member's `MemberLeft` comes after their join; `InviteSnapshotTaken` records come at the first
  fetch of a guild and then at most every `snapshot_log_interval`, for restarts to reconcile from.
- `WakeAt(at)`: feed `ClockTick(at=now)` at or after `at` (the latest WakeAt replaces earlier ones; early or
  extra ticks are harmless). `Attributor.next_wake()` returns the same time on demand (None: nothing waits
  on time), for an actor that prefers to ask after every event.

Events and their `at`: every event carries the bot's clock (UTC, with offset) at the moment the actor got
it; that is the core's only notion of time, so feed events as they come, stamped as they come. Discord's own
times (`joined_at`, invite `created_at` / `expires_at`) travel inside the events untouched. Feed:

- `GuildRestored` per guild at start-up (`restore_events(records)` builds them from the log: last snapshot,
  joins logged since, who ever joined, who is present, when the guild was last seen);
- `GuildAvailable` on GUILD_CREATE / every Ready, with the guild's member list (`members`) whenever the
  adapter has it: members who joined while the bot was away (a restart, a lost session) become offline
  joins. Without a member list that time stays *blind*: counts covering it never credit anybody;
- `GatewayDisconnected(at=time of the last gateway message before the loss)` when the session is lost, so
  fetches made before the next Ready are not trusted to hold only joins the bot saw;
- `InviteCreated`, `InviteDeleted`, `MemberJoined` (joins may come before any GuildAvailable),
  `MemberRemoved`, the fetch answers, and `ClockTick`;
- `InviteFinalUses` from the audit log's INVITE_DELETE entries (an invite deleted by hand, with its use count
  then): a use no fetch counted becomes exact. Joins that may have used an invite found gone are not recorded
  ambiguous before `audit_log_latency` after the fetch that found it gone, in case its entry is on its way.

What it decides (`service.records.JoinRecorded`): exact, new_invite, max_uses, vanity (staff None), unknown
(no count changed: discovery, a bot), ambiguous (candidates listed, staff None; empty candidates mean the
counts could not narrow it at all, e.g. no fetch succeeded within `max_join_wait`), offline_reconciled and
offline_unknown (joined while the bot was away). Flags: rejoin, bot, self_invite, young_account,
expired_invite (credited to an invite that has expired since). Every join yields exactly one record: a join
still undecided after `max_join_wait` is recorded as ambiguous rather than kept waiting.

What its certainty rests on (`AttributionConfig`): gateway events arrive within `gateway_latency` of what
they report; Discord's clock is within `clock_skew` of the bot's (the core also learns the offset from the
joins, and drops the configured bound when the joins prove it wrong on the side they can); Discord counts a
use before it sends the join; bot accounts join through OAuth2, not invites; an invite vanishing one use
short of its max_uses was used up (DESIGN.md's rule; when the INVITE_DELETE is seen, the use must fall
within `gateway_latency` before it, which rules out most hand deletions); and members who join while the
bot is away are still members when it comes back. Before anything about a guild is in the log, the bot
cannot know since when that guild's joins are its to record: a crash in the very first seconds, before the
first snapshot, can lose joins made while it was down.

Inside: `core.GuildAttribution` is the per-guild state machine, built in layers (`state.py` its fields,
`fetching.py` the invite fetches and snapshots, `joins.py` the joins, leaves and blind spans, `rounds.py`
the round after every event); `diff.py` compares fetches into use slots; `solver.py` finds which slots each
join could fill in some assignment consistent with the counts; `problem.py` turns that into decisions
(`quick.py`: the common single-use round without building the problem); `verdict.py` into records;
`reconcile.py` reads the log at start-up; `clock.py` learns the clock offset.
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
