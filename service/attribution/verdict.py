"""From a decided join to the record the log keeps: kind, invite, staff member, uses, candidates, flags."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

import attrs

from service.attribution.diff import ANY_LABEL, NONE_LABEL, VANITY_LABEL, SlotKind, UseSlot
from service.events import MEMBER_FLAG_DID_REJOIN
from service.records import AttributionKind, InviteState, JoinFlag, JoinRecorded

DISCORD_EPOCH_MS = 1420070400000


def account_created_at(user_id: str) -> datetime | None:
    """When a Discord account was created, read from its snowflake: (id >> 22) + Discord's epoch, in ms."""
    try:
        snowflake = int(user_id)
    except ValueError:
        return None
    if snowflake <= 0:
        return None
    return datetime.fromtimestamp(((snowflake >> 22) + DISCORD_EPOCH_MS) / 1000, UTC)


@attrs.frozen
class JoinFacts:
    """What is known about a join independently of which invite it used."""

    guild_id: str
    guild_name: str
    user_id: str
    username: str
    display_name: str
    timestamp: datetime  # joined_at from Discord, or when the join event arrived
    bot: bool
    rejoin: bool  # seen in this guild before, or Discord's DID_REJOIN flag
    member_flags: int
    offline: bool  # the join happened while the bot was not listening


def decide(
    facts: JoinFacts,
    possible: Iterable[UseSlot],
    *,
    final: bool,
    vanity_code: str | None,
    uses: tuple[int | None, int | None],
    now: datetime,
    young_account_days: int,
) -> JoinRecorded | None:
    """The record for a join whose possible slots are `possible`, or None while it is not told apart and
    not `final` (a final join that is not told apart is recorded as ambiguous, never guessed)."""
    slots = list(possible)
    labels = {slot.label for slot in slots}
    told = len(labels) == 1 and ANY_LABEL not in labels  # told_apart(slots), without a second set
    if not told and not final:
        return None
    code: str | None = None
    invite: InviteState | None = None
    candidates: tuple[str, ...] = ()
    if told and NONE_LABEL in labels:
        kind = AttributionKind.OFFLINE_UNKNOWN if facts.offline else AttributionKind.UNKNOWN
    elif told and VANITY_LABEL in labels:
        kind, code = AttributionKind.VANITY, vanity_code
    elif told:
        code = slots[0].label
        invite = slots[0].invite if len(slots) == 1 else _latest_invite(slots)
        # `all(... is ...)` rather than a set of kinds: an Enum member's hash is a Python-level call.
        if facts.offline:
            kind = AttributionKind.OFFLINE_RECONCILED
        elif all(slot.kind is SlotKind.NEW for slot in slots):
            kind = AttributionKind.NEW_INVITE
        elif all(slot.kind is SlotKind.MAX for slot in slots):
            kind = AttributionKind.MAX_USES
        else:
            kind = AttributionKind.EXACT
    else:
        kind = AttributionKind.OFFLINE_UNKNOWN if facts.offline else AttributionKind.AMBIGUOUS
        if ANY_LABEL not in labels:  # with ANY possible, any invite might be it: listing some would mislead
            names = {vanity_code if label == VANITY_LABEL else label for label in labels - {NONE_LABEL}}
            candidates = tuple(sorted(name for name in names if name))
    staff_id = invite.inviter_id if invite is not None else None
    created = account_created_at(facts.user_id)
    return JoinRecorded(
        timestamp=facts.timestamp,
        guild_id=facts.guild_id,
        guild_name=facts.guild_name,
        user_id=facts.user_id,
        username=facts.username,
        display_name=facts.display_name,
        kind=kind,
        invite_code=code,
        staff_id=staff_id,
        staff_username=invite.inviter_name if invite is not None else None,
        uses_before=uses[0] if invite is not None or kind is AttributionKind.VANITY else None,
        uses_after=uses[1] if invite is not None or kind is AttributionKind.VANITY else None,
        candidates=candidates,
        flags=_flags(facts, invite, staff_id, created, now, young_account_days),
        account_created_at=created,
        decided_at=now,
    )


def told_apart(possible: Sequence[UseSlot]) -> bool:
    """Do a join's possible slots name one invite (or none), so that it can be recorded now?"""
    labels = {slot.label for slot in possible}
    return len(labels) == 1 and ANY_LABEL not in labels


def _latest_invite(slots: list[UseSlot]) -> InviteState | None:
    invites = [slot.invite for slot in sorted(slots, key=lambda s: s.end) if slot.invite is not None]
    return invites[-1] if invites else None


def _flags(
    facts: JoinFacts,
    invite: InviteState | None,
    staff_id: str | None,
    created: datetime | None,
    now: datetime,
    young_days: int,
) -> tuple[JoinFlag, ...]:
    flags: list[JoinFlag] = []
    if facts.rejoin or facts.member_flags & MEMBER_FLAG_DID_REJOIN:
        flags.append(JoinFlag.REJOIN)
    if facts.bot:
        flags.append(JoinFlag.BOT)
    if staff_id is not None and staff_id == facts.user_id:
        flags.append(JoinFlag.SELF_INVITE)
    if created is not None and facts.timestamp - created < timedelta(days=young_days):
        flags.append(JoinFlag.YOUNG_ACCOUNT)
    if invite is not None and invite.expires_at is not None and invite.expires_at <= now:
        flags.append(JoinFlag.EXPIRED_INVITE)  # credited to an invite that has expired since
    return tuple(flags)
