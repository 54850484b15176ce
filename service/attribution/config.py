"""Tunables of the attribution core, and the assumptions about Discord that its certainty rests on."""

from __future__ import annotations

from datetime import timedelta

import attrs


@attrs.frozen
class AttributionConfig:
    #: Longest delay between a member joining and their GUILD_MEMBER_ADD (or an INVITE_DELETE) reaching the
    #: core. A fetch is compared only once this long has passed since its answer, so every join it counted
    #: has been seen: a use nobody is waiting for never gets pinned on the wrong join.
    gateway_latency: timedelta = timedelta(seconds=3)
    #: Longest delay between a staff member deleting an invite and its audit log entry (with the invite's
    #: final use count: `InviteFinalUses`) reaching the core. A join that may have used an invite found gone
    #: is not recorded ambiguous until this long after the fetch that found it gone, so that count can still
    #: settle it. Only the wait rests on this: an entry later than that, lost, or never sent (the bot lacks
    #: View Audit Log; an invite that expired) leaves such joins as they would be without it. 0: no wait.
    audit_log_latency: timedelta = timedelta(seconds=5)
    #: Largest difference between the bot's clock and Discord's (`joined_at`, `created_at`, `expires_at`).
    clock_skew: timedelta = timedelta(seconds=1)
    #: A join still undecided this long after it arrived is recorded as ambiguous (or unknown) rather than
    #: kept waiting: every join yields a record, even while Discord rate-limits or fails the invite fetches.
    max_join_wait: timedelta = timedelta(minutes=5)
    #: A fetch the actor has not answered after this long counts as failed (the actor should time out first).
    fetch_timeout: timedelta = timedelta(seconds=30)
    #: Least time between two fetch requests of one guild.
    min_fetch_gap: timedelta = timedelta(milliseconds=250)
    #: Retry delays after failed fetches: doubling from `backoff_initial` up to `backoff_max`.
    backoff_initial: timedelta = timedelta(seconds=1)
    backoff_max: timedelta = timedelta(seconds=60)
    #: Accounts younger than this many days at their join get the young_account flag.
    young_account_days: int = 7
    #: A second GUILD_MEMBER_ADD for someone already present, without a new joined_at, within this window,
    #: is the same join sent again.
    duplicate_window: timedelta = timedelta(minutes=10)
    #: Invite snapshots are logged (for restarts to reconcile from) at most this often per guild.
    snapshot_log_interval: timedelta = timedelta(minutes=10)
    #: After a restart, members who joined up to this long before the last logged snapshot and have no join
    #: record are reconciled too (their join may have been waiting for a decision when the bot stopped).
    restore_margin: timedelta = timedelta(minutes=10)
    #: Bot accounts are added through OAuth2, never through an invite; set True to stop relying on that.
    bots_use_invites: bool = False
