"""The records of the log: every change of state is one of these, written to the WAL before it counts.

The log is the truth (DESIGN.md): the SQLite database is only a projection of these records. Each record
class has a fixed numeric type code that is written in the WAL frame, and a JSON payload produced by the one
converter in `service.convert`. Codes are never reused or renumbered: old logs must stay readable.

Identifiers are Discord snowflakes kept as decimal strings, as Discord's JSON sends them and as the brief's
log shows them. Times are timezone-aware UTC datetimes.
"""

from __future__ import annotations

import enum
from datetime import datetime

import attrs


class AttributionKind(enum.StrEnum):
    """How a join was attributed; only some kinds credit a staff member (see `CREDITING_KINDS`)."""

    EXACT = "exact"  # exactly one code's uses rose by one, nothing else changed
    NEW_INVITE = "new_invite"  # a code first seen with uses 1
    VANITY = "vanity"  # the vanity URL's uses rose
    MAX_USES = "max_uses"  # a code vanished whose uses were max_uses - 1
    AMBIGUOUS = "ambiguous"  # candidates listed, nobody credited
    UNKNOWN = "unknown"  # nothing changed (discovery, bot-added, widget)
    OFFLINE_RECONCILED = "offline_reconciled"  # joined while the bot was down, still unambiguous
    OFFLINE_UNKNOWN = "offline_unknown"  # joined while the bot was down, cannot be told


#: Kinds whose invite code (and so inviter) is certain enough to credit a staff member.
CREDITING_KINDS = frozenset(
    {
        AttributionKind.EXACT,
        AttributionKind.NEW_INVITE,
        AttributionKind.MAX_USES,
        AttributionKind.OFFLINE_RECONCILED,
    }
)


#: Kinds where the bot could not tell the invite and credited nobody, which staff may settle by hand
#: (`JoinSettled`); never a kind the counts decided (a credited invite, the vanity URL, no change at all).
SETTLEABLE_KINDS = frozenset({AttributionKind.AMBIGUOUS, AttributionKind.OFFLINE_UNKNOWN})


class JoinFlag(enum.StrEnum):
    REJOIN = "rejoin"
    BOT = "bot"
    SELF_INVITE = "self_invite"
    YOUNG_ACCOUNT = "young_account"
    EXPIRED_INVITE = "expired_invite"


@attrs.frozen
class InviteState:
    """One invite as seen in a snapshot or fetch."""

    code: str
    uses: int
    max_uses: int = 0  # 0 means unlimited, as Discord sends it
    inviter_id: str | None = None
    inviter_name: str | None = None
    expires_at: datetime | None = None
    channel_id: str | None = None
    created_at: datetime | None = None


@attrs.frozen
class JoinRecorded:
    """A member joined a guild; the brief's fields plus how the invite was attributed."""

    timestamp: datetime  # when the member joined (UTC, with offset)
    guild_id: str
    guild_name: str
    user_id: str
    username: str
    display_name: str
    kind: AttributionKind
    invite_code: str | None = None
    staff_id: str | None = None  # the inviter of the invite; None unless the kind credits someone
    staff_username: str | None = None
    uses_before: int | None = None
    uses_after: int | None = None
    candidates: tuple[str, ...] = ()  # invite codes that could explain an ambiguous join
    flags: tuple[JoinFlag, ...] = ()
    account_created_at: datetime | None = None
    decided_at: datetime | None = None  # when the bot decided the attribution


@attrs.frozen
class MemberLeft:
    timestamp: datetime
    guild_id: str
    user_id: str


@attrs.frozen
class StaffIbSet:
    """A staff member's broker IB link and code; shown with every join credited to them."""

    timestamp: datetime
    guild_id: str
    staff_id: str
    staff_username: str
    ib_link: str
    ib_code: str
    set_by: str  # user id of who set it


@attrs.frozen
class StaffIbRemoved:
    timestamp: datetime
    guild_id: str
    staff_id: str
    removed_by: str


@attrs.frozen
class InviteSnapshotTaken:
    """The invites of a guild as fetched; the basis for reconciling joins that happened while down."""

    timestamp: datetime
    guild_id: str
    guild_name: str
    invites: tuple[InviteState, ...]
    vanity_code: str | None = None
    vanity_uses: int | None = None


@attrs.frozen
class UserErased:
    """A user's personal data erased on request (Discord's developer terms); earlier records are redacted
    in the projection and in exports, the log keeps only this tombstone's effect."""

    timestamp: datetime
    guild_id: str
    user_id: str
    requested_by: str


@attrs.frozen
class JoinSettled:
    """Staff settled by hand which invite a join used, where the bot credited nobody (an ambiguous join, or
    one made while it was away): on the member's word or other proof, after a dispute. The join's own
    record stays as the bot decided it; this one names the invite, its staff member, who settled it, when
    and why. A later settlement of the same join replaces an earlier one (a correction)."""

    timestamp: datetime  # when it was settled
    guild_id: str
    join_lsn: int  # the JoinRecorded settled
    user_id: str  # who joined (the command checks it is that join's member)
    invite_code: str
    staff_id: str | None  # the invite's inviter, as the ledger knew it
    staff_username: str | None
    settled_by: str  # user id of the staff member who settled it
    settled_by_name: str
    reason: str


Record = (
    JoinRecorded | MemberLeft | StaffIbSet | StaffIbRemoved | InviteSnapshotTaken | UserErased | JoinSettled
)

#: WAL frame type codes. Never renumber; add new ones at the end.
RECORD_TYPES: dict[type, int] = {
    JoinRecorded: 1,
    MemberLeft: 2,
    StaffIbSet: 3,
    StaffIbRemoved: 4,
    InviteSnapshotTaken: 5,
    UserErased: 6,
    JoinSettled: 7,
}
TYPE_CLASSES: dict[int, type] = {code: cls for cls, code in RECORD_TYPES.items()}
TYPE_NAMES: dict[int, str] = {
    1: "join",
    2: "leave",
    3: "staff_ib_set",
    4: "staff_ib_removed",
    5: "invite_snapshot",
    6: "user_erased",
    7: "join_settled",
}
