"""The applier's core: turn log records into projection rows, idempotently, keyed by LSN (WAL rule 7).

`apply_batch` is what the applier actor runs in a worker thread for each batch it reads from the log: one
transaction holds the batch's rows *and* the new `applied_lsn`, so after a crash the database is exactly
the projection of the log up to `applied_lsn` and the actor resumes from there. Replaying entries that are
already applied is harmless (they are skipped by LSN); a gap is an error, since the log is gap-free and a
gap means the caller lost a record.

LSNs start at 1; `applied_lsn` 0 means nothing is applied yet.

Erasure (`UserErased`), decided here because Discord's developer terms require deleting a user's data on
request while the counts staff are paid by must stay right:

- the user's join rows in that guild keep what counts need (lsn, time, guild, kind, invite code, staff,
  uses, flags) and lose the rest: `user_id` and `account_created_us` become NULL, `username` and
  `display_name` become `[erased]`, and `erased_lsn` names the erasure;
- their leave rows and member row in that guild are deleted (they hold nothing but the person);
- where the user is the *credited staff member* or an invite's inviter, their name becomes `[erased]`
  (their id stays, it is what the counts are keyed by) and their IB profile is deleted;
- the `erasures` table keeps the tombstone (guild, user id, time, requested_by) so a lookup can say the
  data was erased rather than that the user never joined.

Records after the erasure (say the user joins again) are applied as usual.
"""

from __future__ import annotations

import itertools
import json
import operator
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

import apsw
import msgspec

from service.projection.ids import STORED_IDS, id_param, stored_id_sql
from service.projection.schema import EPOCH, ERASED, ONE_US, to_us
from service.projection.transaction import write_transaction
from service.records import (
    SETTLEABLE_KINDS,
    InviteSnapshotTaken,
    JoinFlag,
    JoinRecorded,
    JoinSettled,
    MemberLeft,
    Record,
    StaffIbRemoved,
    StaffIbSet,
    UserErased,
)

#: Joins per (guild id, kind) in a batch, for `join_counts`. The guild id comes as the record has it (text)
#: or in its stored form from a row (an INTEGER when the text is exactly one's, see `ids`).
JoinCounts = Counter[tuple[int | str, str]]


class LsnGapError(Exception):
    """The batch does not continue the applied prefix of the log: a record is missing before it."""

    def __init__(self, expected: int, got: int) -> None:
        super().__init__(
            f"LSN gap: expected {expected} next, got {got}; the log is gap-free, so a record was lost"
        )
        self.expected = expected
        self.got = got


def _us_or_none(value: datetime | None) -> int | None:
    return None if value is None else to_us(value)


def _json_list(items: Sequence[str]) -> str:
    return json.dumps(list(items), ensure_ascii=False, separators=(",", ":"))


# Flags repeat a handful of combinations: encode each combination once.
_flags_json_cache: dict[tuple[JoinFlag, ...], str] = {(): "[]"}


def _flags_json(flags: tuple[JoinFlag, ...]) -> str:
    text = _flags_json_cache.get(flags)
    if text is None:
        text = _json_list([str(flag.value) for flag in flags])
        if len(_flags_json_cache) < 1024:
            _flags_json_cache[flags] = text
    return text


def applied_lsn(conn: apsw.Connection) -> int:
    """The LSN of the last record whose effects are in the database (0 when none)."""
    return int(conn.execute("SELECT value FROM meta WHERE key = 'applied_lsn'").get)


# Columns in the order `_join_row` builds them: the converted ones first, then the record's own attributes,
# fetched in C but for the guild and staff ids, which the row holds in their stored form (`ids`).
_JOIN_ATTRIBUTES = (
    "guild_id",
    "guild_name",
    "user_id",
    "username",
    "display_name",
    "kind",  # a StrEnum: binds as its text value
    "invite_code",
    "staff_id",
    "staff_username",
    "uses_before",
    "uses_after",
)
_between_guild_and_staff = operator.attrgetter(*_JOIN_ATTRIBUTES[1:7])
_after_staff = operator.attrgetter(*_JOIN_ATTRIBUTES[8:])
_guild_and_kind = operator.attrgetter("guild_id", "kind")
_record_of = operator.itemgetter(1)
_lsn_of = operator.itemgetter(0)
_INSERT_JOIN_COLUMNS = (
    "lsn",
    "timestamp_us",
    "account_created_us",
    "decided_us",
    "candidates",
    "flags",
    *_JOIN_ATTRIBUTES,
)
# The row binds the guild and staff ids in their stored form (`STORED_IDS`) and the user id as its text,
# converted here, in C (see `ids`).
_INSERT_JOIN = (
    f"INSERT INTO joins ({', '.join(_INSERT_JOIN_COLUMNS)}) VALUES ("
    + ", ".join(
        stored_id_sql(f"?{n}") if column == "user_id" else f"?{n}"
        for n, column in enumerate(_INSERT_JOIN_COLUMNS, start=1)
    )
    + ")"
)

# first_join_lsn stays once set; a rejoin only moves last_join_lsn.
_UPSERT_MEMBER_JOINED = f"""INSERT INTO members (guild_id, user_id, in_guild, join_count, first_join_lsn,
    last_join_lsn) VALUES ({stored_id_sql("?1")}, {stored_id_sql("?2")}, 1, 1, ?3, ?3)
    ON CONFLICT (guild_id, user_id) DO UPDATE SET in_guild = 1, join_count = join_count + 1,
        first_join_lsn = coalesce(first_join_lsn, excluded.first_join_lsn),
        last_join_lsn = excluded.last_join_lsn"""

# A leave of someone the ledger never saw join (they joined before the bot) still creates the member row.
_UPSERT_MEMBER_LEFT = f"""INSERT INTO members (guild_id, user_id, in_guild, join_count, last_left_us,
    last_left_lsn) VALUES ({stored_id_sql("?1")}, {stored_id_sql("?2")}, 0, 0, ?3, ?4)
    ON CONFLICT (guild_id, user_id) DO UPDATE SET in_guild = 0, last_left_us = excluded.last_left_us,
        last_left_lsn = excluded.last_left_lsn"""

# The (guild, kind, joins) rows come as one JSON array: one bind and one step for a batch's few hundred
# guilds instead of four calls each (each call into SQLite gives the GIL away; see `json_batch`).
#: JSON for the one-step statements (here and in json_batch): msgspec, in C.
encode_json = msgspec.json.Encoder().encode
_ADD_JOIN_COUNTS = """INSERT INTO join_counts (guild_id, kind, joins)
    SELECT value->>0, value->>1, value->>2 FROM json_each(?1) WHERE true
    ON CONFLICT (guild_id, kind) DO UPDATE SET joins = joins + excluded.joins"""


def _join_row(lsn: int, r: JoinRecorded) -> tuple[Any, ...]:
    # to_us() written out: three calls fewer per join is a tenth of a rebuild's Python time.
    created = r.account_created_at
    decided = r.decided_at
    return (
        lsn,
        (r.timestamp - EPOCH) // ONE_US,
        None if created is None else (created - EPOCH) // ONE_US,
        None if decided is None else (decided - EPOCH) // ONE_US,
        _json_list(r.candidates) if r.candidates else "[]",
        _flags_json_cache.get(r.flags) or _flags_json(r.flags),
        STORED_IDS[r.guild_id],
        *_between_guild_and_staff(r),
        STORED_IDS[r.staff_id],
        *_after_staff(r),
    )


def _apply_left(conn: apsw.Connection, lsn: int, r: MemberLeft) -> None:
    conn.execute(
        f"INSERT INTO leaves VALUES (?1, ?2, {stored_id_sql('?3')}, {stored_id_sql('?4')})",
        (lsn, to_us(r.timestamp), r.guild_id, r.user_id),
    )


def _apply_staff_set(conn: apsw.Connection, lsn: int, r: StaffIbSet) -> None:
    conn.execute(
        "INSERT OR REPLACE INTO staff_ib VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (r.guild_id, r.staff_id, r.staff_username, r.ib_link, r.ib_code, r.set_by, to_us(r.timestamp), lsn),
    )


def _apply_staff_removed(conn: apsw.Connection, lsn: int, r: StaffIbRemoved) -> None:
    conn.execute("DELETE FROM staff_ib WHERE guild_id = ? AND staff_id = ?", (r.guild_id, r.staff_id))


def _apply_snapshot(conn: apsw.Connection, lsn: int, r: InviteSnapshotTaken) -> None:
    conn.execute(
        "INSERT OR REPLACE INTO invite_snapshots VALUES (?, ?, ?, ?, ?, ?)",
        (r.guild_id, r.guild_name, to_us(r.timestamp), lsn, r.vanity_code, r.vanity_uses),
    )
    conn.execute("DELETE FROM snapshot_invites WHERE guild_id = ?", (r.guild_id,))
    # OR REPLACE: a code listed twice in one fetch must not stop the applier (the last one wins).
    conn.executemany(
        "INSERT OR REPLACE INTO snapshot_invites VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                r.guild_id,
                inv.code,
                inv.uses,
                inv.max_uses,
                inv.inviter_id,
                inv.inviter_name,
                _us_or_none(inv.expires_at),
                inv.channel_id,
                _us_or_none(inv.created_at),
            )
            for inv in r.invites
        ],
    )


def _apply_erased(conn: apsw.Connection, lsn: int, r: UserErased) -> None:
    who = (r.guild_id, r.user_id)
    stored = (id_param(r.guild_id), id_param(r.user_id))  # as joins, leaves and members hold them
    # An erasure redacts the joins before it, never a later one (a rejoin after the erasure is recorded as
    # usual). The live applier has no later joins yet; a parallel rebuild (`parts`) copies every join in
    # before it applies the other records, and the `lsn < ?` bounds make that give the same rows.
    conn.execute(
        "UPDATE joins SET user_id = NULL, username = ?, display_name = ?, account_created_us = NULL, "
        "erased_lsn = ? WHERE guild_id = ? AND user_id = ? AND lsn < ?",
        (ERASED, ERASED, lsn, *stored, lsn),
    )
    joins_redacted = conn.changes()
    conn.execute(
        "UPDATE joins SET staff_username = ? "
        "WHERE guild_id = ? AND staff_id = ? AND staff_username IS NOT NULL AND lsn < ?",
        (ERASED, *stored, lsn),
    )
    conn.execute(
        "UPDATE snapshot_invites SET inviter_name = ? "
        "WHERE guild_id = ? AND inviter_id = ? AND inviter_name IS NOT NULL",
        (ERASED, *who),
    )
    # Settlements before the erasure: of the user's joins (the reason may say anything about them), by
    # them, or crediting them.
    conn.execute(
        "UPDATE settlements SET user_id = NULL, reason = ? WHERE guild_id = ? AND user_id = ? AND lsn < ?",
        (ERASED, *who, lsn),
    )
    conn.execute(
        "UPDATE settlements SET settled_by_name = ? WHERE guild_id = ? AND settled_by = ? AND lsn < ?",
        (ERASED, *who, lsn),
    )
    conn.execute(
        "UPDATE settlements SET staff_username = ? "
        "WHERE guild_id = ? AND staff_id = ? AND staff_username IS NOT NULL AND lsn < ?",
        (ERASED, *who, lsn),
    )
    conn.execute("DELETE FROM staff_ib WHERE guild_id = ? AND staff_id = ?", who)
    conn.execute("DELETE FROM leaves WHERE guild_id = ? AND user_id = ?", stored)
    conn.execute("DELETE FROM members WHERE guild_id = ? AND user_id = ?", stored)
    conn.execute(
        "INSERT INTO erasures VALUES (?, ?, ?, ?, ?, ?)",
        (lsn, to_us(r.timestamp), r.guild_id, r.user_id, r.requested_by, joins_redacted),
    )


_SETTLEABLE_SQL = "(" + ", ".join(sorted(f"'{kind.value}'" for kind in SETTLEABLE_KINDS)) + ")"


def _apply_settled(conn: apsw.Connection, lsn: int, r: JoinSettled) -> None:
    # Only an earlier join of that guild and of a settleable kind (the command checks more; the log is
    # applied as written, so an odd record must still apply the same way in every path): the `lsn < ?`
    # bound keeps a parallel rebuild, which has every join in before it applies this, equal to the live
    # applier, which has only the earlier ones.
    conn.execute(
        "UPDATE joins SET invite_code = ?, staff_id = ?, staff_username = ?, settled_lsn = ? "
        f"WHERE lsn = ? AND lsn < ? AND guild_id = ? AND kind IN {_SETTLEABLE_SQL}",
        (r.invite_code, STORED_IDS[r.staff_id], r.staff_username, lsn, r.join_lsn, lsn, id_param(r.guild_id)),
    )
    conn.execute(
        "INSERT INTO settlements VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            lsn, r.join_lsn, to_us(r.timestamp), r.guild_id, r.user_id, r.invite_code, r.staff_id,
            r.staff_username, r.settled_by, r.settled_by_name, r.reason, conn.changes(),
        ),
    )  # fmt: skip


_HANDLERS: dict[type, Callable[[apsw.Connection, int, Any], None]] = {
    MemberLeft: _apply_left,
    StaffIbSet: _apply_staff_set,
    StaffIbRemoved: _apply_staff_removed,
    InviteSnapshotTaken: _apply_snapshot,
    UserErased: _apply_erased,
    JoinSettled: _apply_settled,
}


def continue_from(entries: Iterable[tuple[int, Record]], applied: int) -> list[tuple[int, Record]]:
    """The entries after `applied`, checked to continue it without a gap (else `LsnGapError`)."""
    if isinstance(entries, list) and entries and entries[0][0] == applied + 1:
        # The usual batch continues the log exactly: check it with C-speed list operations.
        if list(map(_lsn_of, entries)) == list(range(applied + 1, applied + 1 + len(entries))):
            return entries
    todo: list[tuple[int, Record]] = []
    last = applied
    for entry in entries:
        lsn = entry[0]
        if lsn <= last:
            if lsn < 1:
                raise ValueError(f"LSN {lsn}: LSNs start at 1")
            continue
        if lsn != last + 1:
            raise LsnGapError(last + 1, lsn)
        todo.append(entry)
        last = lsn
    return todo


def set_applied_lsn(conn: apsw.Connection, lsn: int) -> None:
    conn.execute("UPDATE meta SET value = ? WHERE key = 'applied_lsn'", (lsn,))


def apply_entries(
    conn: apsw.Connection,
    entries: Sequence[tuple[int, Record]],
    *,
    maintain_members: bool = True,
    before_erasure: Callable[[], None] | None = None,
) -> None:
    """Apply entries checked by `continue_from`, in log order, inside the caller's transaction.

    Consecutive joins (nearly every record) go in with one executemany per table; any other record first
    flushes the pending joins, so every statement still sees the effects of all earlier records.

    A rebuild into an empty database (`service.projection.rebuild`) passes `maintain_members=False` and
    derives the members table once at the end (`derive_members`), and `before_erasure` to get its indexes
    back before the first erasure needs them.
    """
    joins: list[tuple[int, JoinRecorded]] = []  # the current run of consecutive joins
    counts: JoinCounts = Counter()

    def flush_joins() -> None:
        if not joins:
            return
        conn.executemany(_INSERT_JOIN, [_join_row(lsn, record) for lsn, record in joins])
        if maintain_members:
            conn.executemany(_UPSERT_MEMBER_JOINED, [(r.guild_id, r.user_id, lsn) for lsn, r in joins])
        counts.update(map(_guild_and_kind, map(_record_of, joins)))  # counted in C, no Python loop
        joins.clear()

    for entry in entries:
        record = entry[1]
        if type(record) is JoinRecorded:
            joins.append(entry)  # type: ignore[arg-type]
            continue
        lsn = entry[0]
        handler = _HANDLERS.get(type(record))
        if handler is None:
            raise TypeError(f"LSN {lsn}: not a log record: {type(record).__name__}")
        flush_joins()
        if before_erasure is not None and type(record) is UserErased:
            before_erasure()
        handler(conn, lsn, record)
        if maintain_members and type(record) is MemberLeft:
            conn.execute(_UPSERT_MEMBER_LEFT, (record.guild_id, record.user_id, to_us(record.timestamp), lsn))
    flush_joins()
    add_join_counts(conn, counts)


def add_join_counts(conn: apsw.Connection, counts: JoinCounts) -> None:
    """Add joins per (guild, kind) to `join_counts`."""
    if counts:
        # A guild id may come as its stored form (from a row): join_counts keeps the text (TEXT affinity
        # turns an integer into its text, which is the id's text, see `ids`).
        rows = sorted((str(guild), str(kind), n) for (guild, kind), n in counts.items())
        conn.execute(_ADD_JOIN_COUNTS, (encode_json(rows).decode(),))


# The members table as a function of joins and leaves (what the upserts above maintain row by row): an
# erasure NULLs the user id of the user's joins and deletes their leaves, so it drops out here too. The
# join side walks joins_by_user in key order (no sort), so the members B-tree is filled by appending.
DERIVE_MEMBERS = """INSERT INTO members (guild_id, user_id, in_guild, join_count, first_join_lsn,
        last_join_lsn, last_left_us, last_left_lsn)
    WITH last_leave AS (
        -- with a single max(), SQLite takes the bare column timestamp_us from the row of that max
        SELECT guild_id, user_id, max(lsn) AS lsn, timestamp_us FROM leaves GROUP BY guild_id, user_id
    )
    SELECT j.guild_id, j.user_id, coalesce(j.last_join_lsn > l.lsn, 1), j.join_count, j.first_join_lsn,
        j.last_join_lsn, l.timestamp_us, l.lsn
    FROM (
        SELECT guild_id, user_id, count(*) AS join_count, min(lsn) AS first_join_lsn,
            max(lsn) AS last_join_lsn
        FROM joins WHERE user_id IS NOT NULL GROUP BY guild_id, user_id
    ) AS j LEFT JOIN last_leave AS l ON l.guild_id = j.guild_id AND l.user_id = j.user_id
    UNION ALL
    SELECT l.guild_id, l.user_id, 0, 0, NULL, NULL, l.timestamp_us, l.lsn
    FROM last_leave AS l
    WHERE NOT EXISTS (SELECT 1 FROM joins WHERE joins.guild_id = l.guild_id AND joins.user_id = l.user_id)"""


def derive_members(conn: apsw.Connection) -> None:
    """Fill an empty members table from joins and leaves (a rebuild's last step)."""
    conn.execute(DERIVE_MEMBERS)


def apply_batch(conn: apsw.Connection, entries: Sequence[tuple[int, Record]]) -> int:
    """Apply a batch of (lsn, record) in one transaction that also advances `applied_lsn`.

    Entries at or below the applied LSN are skipped (replays are harmless); the rest must continue it
    without a gap, else `LsnGapError` is raised and nothing of the batch is applied. Returns the applied
    LSN after the batch.
    """
    with write_transaction(conn):  # its COMMIT lets the event loop run meanwhile
        applied = applied_lsn(conn)
        todo = continue_from(entries, applied)
        if not todo:
            return applied
        apply_entries(conn, todo)
        applied = todo[-1][0]
        set_applied_lsn(conn, applied)
    return applied


def rebuild_apply(
    conn: apsw.Connection, entries: Iterable[tuple[int, Record]], batch_size: int = 50_000
) -> int:
    """Apply a whole log (or its tail after `applied_lsn`) in transactions of `batch_size` records.

    The same code as `apply_batch`, so the result is the same; only the transactions are bigger, which
    is what a rebuild wants (see `service.projection.rebuild` for the PRAGMAs of a throw-away file).
    Consumes `entries` lazily: memory stays bounded by one batch. Returns the applied LSN.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    applied = applied_lsn(conn)
    iterator = iter(entries)
    while batch := list(itertools.islice(iterator, batch_size)):
        applied = apply_batch(conn, batch)
    return applied
