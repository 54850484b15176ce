"""Settling by hand which invite a join used: the rules, as a pure function; the ledger does the I/O.

The bot never credits a staff member on a guess (DESIGN.md): a join it cannot tell apart is recorded
`ambiguous` with the invites the counts allow, or `offline_unknown` when it happened while the bot was away.
Staff settle such a join once they know (the member shows the link they used, the staff member's DM, …):
the `JoinSettled` record names the invite, its owner as the ledger knows it, who settled it and why, and
from then on the join counts for that invite and staff member. What may be settled, and to what:

- only a join the bot credited nobody for because it could not tell (`ambiguous`, `offline_unknown`); a
  join it credited, the vanity URL, or one where no invite's uses changed is decided by the counts;
- only to one of the join's candidates when the bot listed some (the counts rule out every other invite);
- only to an invite whose owner the ledger knows (an invite snapshot lists it, or a join was credited to
  it), since a settlement credits a staff member;
- with a reason, which stays with the record (disputes are settled on evidence, and the next person to
  ask should see which).

A settled join can be settled again (a correction): the latest settlement is in force, all are kept.
"""

from __future__ import annotations

from datetime import datetime

import attrs

from service.projection.queries import JoinEntry, UserLookup
from service.records import SETTLEABLE_KINDS, JoinSettled

REASON_MAX = 300


class SettleRefused(Exception):
    """The settlement is not allowed; the message tells staff why (shown to them as is)."""


@attrs.frozen
class SettleRequest:
    guild_id: str
    user_id: str
    invite_code: str
    settled_by: str
    settled_by_name: str
    reason: str
    join_lsn: int | None = None  # which of the user's joins; None: their latest


@attrs.frozen
class Settled:
    """A settlement made durable: its LSN, the record, and the join it settled (as it was before)."""

    lsn: int
    record: JoinSettled
    join: JoinEntry


def settlement(
    request: SettleRequest, found: UserLookup, owner: tuple[str, str | None] | None, now: datetime
) -> tuple[JoinSettled, JoinEntry]:
    """The record settling `request`, and the join it settles; raises `SettleRefused`.

    `found` is the user's lookup; `owner` is the invite's owner as the ledger knows it (None: unknown)."""
    join = _chosen_join(request, found)
    if join.kind not in SETTLEABLE_KINDS:
        raise SettleRefused(
            f"The bot recorded this join (LSN {join.lsn}) as **{join.kind.value}**: decided by the invite "
            "counts, so there is nothing to settle. Only `ambiguous` and `offline_unknown` joins, which "
            "credit nobody, can be settled by hand."
        )
    code = request.invite_code
    if join.candidates and code not in join.candidates:
        allowed = ", ".join(f"`{c}`" for c in join.candidates)
        raise SettleRefused(
            f"The invite counts allow only {allowed} for this join (LSN {join.lsn}); `{code}` cannot have "
            "been used. Nothing was changed."
        )
    if owner is None:
        raise SettleRefused(
            f"The ledger does not know who owns `{code}` in this server: no invite snapshot lists it and no "
            "join was credited to it (the vanity URL belongs to nobody; an invite created in the last few "
            "minutes is known once the next snapshot is logged, within 10 minutes). Nothing was changed."
        )
    reason = " ".join(request.reason.split())
    if not reason:
        raise SettleRefused(
            "Say why in `reason` (what the member showed, who confirmed it): it stays on record."
        )
    if len(reason) > REASON_MAX:
        raise SettleRefused(f"The reason is {len(reason)} characters long; keep it to {REASON_MAX}.")
    record = JoinSettled(
        timestamp=now,
        guild_id=request.guild_id,
        join_lsn=join.lsn,
        user_id=request.user_id,
        invite_code=code,
        staff_id=owner[0],
        staff_username=owner[1],
        settled_by=request.settled_by,
        settled_by_name=request.settled_by_name,
        reason=reason,
    )
    return record, join


def _chosen_join(request: SettleRequest, found: UserLookup) -> JoinEntry:
    joins = [event.join for event in found.history if event.join is not None]
    if not joins:
        raise SettleRefused(f"No join of <@{request.user_id}> is recorded in this server.")
    if request.join_lsn is None:
        latest = found.latest_join
        assert latest is not None  # there are joins
        return latest
    for join in joins:
        if join.lsn == request.join_lsn:
            return join
    listed = ", ".join(str(j.lsn) for j in joins[-10:])
    raise SettleRefused(
        f"<@{request.user_id}> has no join with LSN {request.join_lsn} in this server; their joins: {listed}."
    )
