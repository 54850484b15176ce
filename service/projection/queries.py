"""What staff commands, the CLI and metrics ask the projection: synchronous functions on a read connection.

Every function reads inside one transaction, so a multi-statement answer comes from one snapshot, and
returns frozen attrs objects with times as aware UTC datetimes. Callers that need read-your-writes wait
until `applied_lsn(conn)` reaches the LSN the WAL writer acknowledged before asking.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import date, datetime
from typing import Any, Literal, overload

import apsw
import attrs

from service.projection.apply import applied_lsn
from service.projection.ids import id_param, text_columns
from service.projection.schema import SCHEMA_VERSION, from_us, to_us
from service.records import AttributionKind, JoinFlag

__all__ = [
    "Erasure",
    "InviteComparison",
    "JoinCursor",
    "JoinEntry",
    "JoinPage",
    "MemberEvent",
    "MemberState",
    "ProjectionStats",
    "Settlement",
    "StaffPeriodCount",
    "StaffProfile",
    "UserLookup",
    "applied_lsn",
    "dump_tables",
    "invite_comparison",
    "invite_owner",
    "join_logs",
    "lookup_user",
    "projection_digest",
    "staff_counts",
    "staff_profile",
    "stats",
]


@attrs.frozen
class JoinEntry:
    """One recorded join, as the log has it (personal fields blanked if the user was erased since)."""

    lsn: int
    timestamp: datetime
    guild_id: str
    guild_name: str
    user_id: str | None  # None once erased
    username: str
    display_name: str
    kind: AttributionKind
    invite_code: str | None
    staff_id: str | None
    staff_username: str | None
    uses_before: int | None
    uses_after: int | None
    candidates: tuple[str, ...]
    flags: tuple[JoinFlag, ...]
    account_created_at: datetime | None
    decided_at: datetime | None
    erased: bool
    settlement: Settlement | None = None  # the settlement in force, if staff settled the invite by hand


@attrs.frozen
class Settlement:
    """Who settled a join's invite by hand, when and why (`JoinSettled`); the join's invite_code, staff_id and
    staff_username are then the settlement's."""

    lsn: int
    timestamp: datetime
    settled_by: str
    settled_by_name: str
    reason: str


@attrs.frozen
class MemberEvent:
    """A join or a leave in a member's history."""

    lsn: int
    timestamp: datetime
    event: Literal["join", "leave"]
    join: JoinEntry | None  # the join's details; None for a leave


@attrs.frozen
class MemberState:
    in_guild: bool
    join_count: int
    first_join_lsn: int | None
    last_join_lsn: int | None
    last_left_at: datetime | None
    last_left_lsn: int | None


@attrs.frozen
class StaffProfile:
    """A staff member's IB profile as it is now."""

    guild_id: str
    staff_id: str
    staff_username: str
    ib_link: str
    ib_code: str
    set_by: str
    updated_at: datetime
    lsn: int


@attrs.frozen
class Erasure:
    lsn: int
    timestamp: datetime
    guild_id: str
    user_id: str
    requested_by: str
    joins_redacted: int


@attrs.frozen
class UserLookup:
    """Everything `/lookup_user_invite` shows.

    `latest_join` is the user's most recent join (by join time, then LSN); `staff_profile` is the CURRENT
    IB profile of the staff member that join credits (None when it credits nobody or the staff member has
    no profile now). `proof_lsn` is the LSN of the join record that proves the attribution, and
    `proof_segment` the WAL segment holding it when the caller passed `segment_of`.
    """

    guild_id: str
    user_id: str
    latest_join: JoinEntry | None
    history: tuple[MemberEvent, ...]  # oldest first
    member: MemberState | None
    staff_profile: StaffProfile | None
    proof_lsn: int | None
    proof_segment: str | None
    erasures: tuple[Erasure, ...]
    applied_lsn: int  # the log prefix this answer reflects


@attrs.frozen(order=True)
class JoinCursor:
    """Where the next page of `join_logs` starts: strictly older than (timestamp, lsn)."""

    timestamp: datetime
    lsn: int


@attrs.frozen
class JoinPage:
    entries: tuple[JoinEntry, ...]  # newest first
    next_cursor: JoinCursor | None  # None when there is nothing older


@attrs.frozen
class InviteComparison:
    code: str
    inviter_id: str | None
    inviter_name: str | None
    discord_uses: int | None  # None: Discord no longer lists the code (expired, deleted, used up)
    ledger_count: int  # joins the ledger attributes to this code
    delta: int | None  # discord_uses - ledger_count

    @property
    def is_discrepancy(self) -> bool:
        return self.delta is not None and self.delta != 0


@attrs.frozen
class StaffPeriodCount:
    period_start: date  # UTC day, Monday of the ISO week, or first of the month
    staff_id: str
    staff_username: str | None  # the name on their latest credited join in the period
    joins: int  # credited joins
    members: int  # distinct members among them (erased members are not counted)
    still_in_guild: int  # of those members, how many are in the guild now


@attrs.frozen
class ProjectionStats:
    applied_lsn: int
    schema_version: int
    joins: int
    leaves: int
    members: int
    members_in_guild: int
    staff_profiles: int
    invite_snapshots: int
    snapshot_invites: int
    erasures: int
    settlements: int  # by hand, corrections included
    joins_by_kind: Mapping[str, int]


# The column list `_join_entry` reads, in its order; ids read as the text written (`ids`).
_JOIN_COLUMNS = (
    "lsn, timestamp_us, CAST(guild_id AS TEXT), guild_name, CAST(user_id AS TEXT), username, display_name, "
    "kind, invite_code, CAST(staff_id AS TEXT), staff_username, uses_before, uses_after, candidates, flags, "
    "account_created_us, decided_us, erased_lsn, settled_lsn"
)


def _rows(conn: apsw.Connection, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """All rows of a query, typed loosely: the schema, not the type checker, knows each column's type."""
    rows: list[tuple[Any, ...]] = conn.execute(sql, params).fetchall()
    return rows


def _join_entries(conn: apsw.Connection, rows: Sequence[tuple[Any, ...]]) -> list[JoinEntry]:
    """`JoinEntry`s of rows read with `_JOIN_COLUMNS`, their settlements looked up in one query."""
    settled = [row[18] for row in rows if row[18] is not None]
    found: dict[int, Settlement] = {}
    if settled:
        marks = ", ".join("?" * len(settled))
        sql = (
            "SELECT lsn, timestamp_us, settled_by, settled_by_name, reason FROM settlements "
            f"WHERE lsn IN ({marks})"
        )
        for lsn, at, by, by_name, reason in conn.execute(sql, settled):
            found[lsn] = Settlement(lsn, from_us(at), by, by_name, reason)
    return [_join_entry(row, found.get(row[18])) for row in rows]


def _join_entry(row: tuple[Any, ...], settlement: Settlement | None) -> JoinEntry:
    return JoinEntry(
        lsn=row[0],
        timestamp=from_us(row[1]),
        guild_id=row[2],
        guild_name=row[3],
        user_id=row[4],
        username=row[5],
        display_name=row[6],
        kind=AttributionKind(row[7]),
        invite_code=row[8],
        staff_id=row[9],
        staff_username=row[10],
        uses_before=row[11],
        uses_after=row[12],
        candidates=tuple(json.loads(row[13])),
        flags=tuple(JoinFlag(flag) for flag in json.loads(row[14])),
        account_created_at=None if row[15] is None else from_us(row[15]),
        decided_at=None if row[16] is None else from_us(row[16]),
        erased=row[17] is not None,
        settlement=settlement,
    )


def _staff_profile(row: tuple[Any, ...]) -> StaffProfile:
    return StaffProfile(row[0], row[1], row[2], row[3], row[4], row[5], from_us(row[6]), row[7])


_STAFF_COLUMNS = "guild_id, staff_id, staff_username, ib_link, ib_code, set_by, updated_us, lsn"


def lookup_user(
    conn: apsw.Connection, guild_id: str, user_id: str, *, segment_of: Callable[[int], str] | None = None
) -> UserLookup:
    """A member's latest join, full join/leave history, and the credited staff member's current IB profile."""
    stored = (id_param(guild_id), id_param(user_id))  # as joins, leaves and members hold them
    with conn:
        joins = _join_entries(
            conn,
            _rows(
                conn,
                f"SELECT {_JOIN_COLUMNS} FROM joins WHERE guild_id = ? AND user_id = ? "
                "ORDER BY timestamp_us, lsn",
                stored,
            ),
        )
        leaves = _rows(
            conn,
            "SELECT lsn, timestamp_us FROM leaves WHERE guild_id = ? AND user_id = ?",
            stored,
        )
        member_row = conn.execute(
            "SELECT in_guild, join_count, first_join_lsn, last_join_lsn, last_left_us, last_left_lsn "
            "FROM members WHERE guild_id = ? AND user_id = ?",
            stored,
        ).fetchone()
        erasures = tuple(
            Erasure(row[0], from_us(row[1]), row[2], row[3], row[4], row[5])
            for row in conn.execute(
                "SELECT lsn, timestamp_us, guild_id, user_id, requested_by, joins_redacted FROM erasures "
                "WHERE guild_id = ? AND user_id = ? ORDER BY lsn",
                (guild_id, user_id),
            )
        )
        latest = joins[-1] if joins else None
        profile = None
        if latest is not None and latest.staff_id is not None:
            profile_row = conn.execute(
                f"SELECT {_STAFF_COLUMNS} FROM staff_ib WHERE guild_id = ? AND staff_id = ?",
                (guild_id, latest.staff_id),
            ).fetchone()
            profile = None if profile_row is None else _staff_profile(profile_row)
        applied = applied_lsn(conn)
    events = [MemberEvent(j.lsn, j.timestamp, "join", j) for j in joins]
    events += [MemberEvent(lsn, from_us(at), "leave", None) for lsn, at in leaves]
    events.sort(key=lambda e: (e.timestamp, e.lsn))
    member = None
    if member_row is not None:
        in_guild, join_count, first_lsn, last_lsn, left_us, left_lsn = member_row
        member = MemberState(
            bool(in_guild),
            join_count,
            first_lsn,
            last_lsn,
            None if left_us is None else from_us(left_us),
            left_lsn,
        )
    proof_lsn = None if latest is None else latest.lsn
    return UserLookup(
        guild_id=guild_id,
        user_id=user_id,
        latest_join=latest,
        history=tuple(events),
        member=member,
        staff_profile=profile,
        proof_lsn=proof_lsn,
        proof_segment=None if proof_lsn is None or segment_of is None else segment_of(proof_lsn),
        erasures=erasures,
        applied_lsn=applied,
    )


def join_logs(
    conn: apsw.Connection,
    guild_id: str,
    *,
    user_id: str | None = None,
    invite_code: str | None = None,
    staff_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 25,
    before: JoinCursor | None = None,
) -> JoinPage:
    """A page of a guild's joins, newest first, filtered; `since` is inclusive, `until` exclusive.

    Keyset pagination: pass the returned `next_cursor` as `before` for the next page. Pages never repeat
    or skip a row, even while new joins arrive (they sort before the cursor, or after it and are not
    part of older pages).
    """
    if not 1 <= limit <= 1000:
        raise ValueError(f"limit must be between 1 and 1000, not {limit}")
    where = ["guild_id = ?"]
    params: list[Any] = [id_param(guild_id)]
    for column, value in (("user_id", user_id), ("invite_code", invite_code), ("staff_id", staff_id)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value if column == "invite_code" else id_param(value))
    if since is not None:
        where.append("timestamp_us >= ?")
        params.append(to_us(since))
    if until is not None:
        where.append("timestamp_us < ?")
        params.append(to_us(until))
    if before is not None:
        where.append("(timestamp_us, lsn) < (?, ?)")
        params += [to_us(before.timestamp), before.lsn]
    sql = (
        f"SELECT {_JOIN_COLUMNS} FROM joins WHERE {' AND '.join(where)} "
        "ORDER BY timestamp_us DESC, lsn DESC LIMIT ?"
    )
    with conn:
        rows = conn.execute(sql, (*params, limit + 1)).fetchall()
        entries = tuple(_join_entries(conn, rows[:limit]))
    next_cursor = None
    if len(rows) > limit:
        last = entries[-1]
        next_cursor = JoinCursor(last.timestamp, last.lsn)
    return JoinPage(entries, next_cursor)


def invite_comparison(
    conn: apsw.Connection, guild_id: str, discord_uses: Mapping[str, int]
) -> tuple[InviteComparison, ...]:
    """Discord's current use counts against the joins the ledger attributes to each code.

    One row per code Discord lists or the ledger has joins for. Discrepancies first (largest |delta|
    first), then codes Discord no longer lists, then codes that agree; ties by code.
    """
    with conn:
        ledger: dict[str, int] = dict(
            _rows(
                conn,
                "SELECT invite_code, count(*) FROM joins WHERE guild_id = ? AND invite_code IS NOT NULL "
                "GROUP BY invite_code",
                (id_param(guild_id),),
            )
        )
        # The snapshot knows each listed code's inviter, even of codes nobody joined through yet.
        inviters: dict[str, tuple[str | None, str | None]] = {
            code: (inviter_id, inviter_name)
            for code, inviter_id, inviter_name in _rows(
                conn,
                "SELECT code, inviter_id, inviter_name FROM snapshot_invites "
                "WHERE guild_id = ? AND inviter_id IS NOT NULL",
                (guild_id,),
            )
        }
        # Codes gone from the snapshot: the staff credited on the code's latest crediting join (one
        # short walk back along joins_by_code per code).
        for code in sorted(set(ledger) - set(inviters)):
            credited = _rows(
                conn,
                "SELECT CAST(staff_id AS TEXT), staff_username FROM joins WHERE guild_id = ? "
                "AND invite_code = ? AND staff_id IS NOT NULL ORDER BY timestamp_us DESC, lsn DESC LIMIT 1",
                (id_param(guild_id), code),
            )
            if credited:
                inviters[code] = credited[0]
    rows = []
    for code in sorted(set(ledger) | set(discord_uses)):
        uses = discord_uses.get(code)
        count = int(ledger.get(code, 0))
        inviter_id, inviter_name = inviters.get(code, (None, None))
        rows.append(
            InviteComparison(
                code, inviter_id, inviter_name, uses, count, None if uses is None else uses - count
            )
        )

    def order(row: InviteComparison) -> tuple[int, int, str]:
        rank = 0 if row.is_discrepancy else 1 if row.delta is None else 2
        return (rank, -abs(row.delta or 0), row.code)

    return tuple(sorted(rows, key=order))


def invite_owner(conn: apsw.Connection, guild_id: str, code: str) -> tuple[str, str | None] | None:
    """Who owns invite `code` of a guild, as the ledger knows it: the inviter in the latest invite snapshot,
    else the staff member credited on the code's latest join that credits someone (a code deleted since).
    None when the ledger knows no owner."""
    with conn:
        row = conn.execute(
            "SELECT inviter_id, inviter_name FROM snapshot_invites WHERE guild_id = ? AND code = ? "
            "AND inviter_id IS NOT NULL",
            (guild_id, code),
        ).fetchone()
        if row is None:
            row = conn.execute(
                "SELECT CAST(staff_id AS TEXT), staff_username FROM joins WHERE guild_id = ? "
                "AND invite_code = ? AND staff_id IS NOT NULL ORDER BY timestamp_us DESC, lsn DESC LIMIT 1",
                (id_param(guild_id), code),
            ).fetchone()
    return None if row is None else (str(row[0]), row[1])


# The UTC day of a *_us column as SQLite date text; the floor keeps times before 1970 on their own day.
_DAY = "date((timestamp_us - (((timestamp_us % 1000000) + 1000000) % 1000000)) / 1000000, 'unixepoch'{})"
_PERIOD_SQL = {
    "day": _DAY.format(""),
    "week": _DAY.format(", '-6 days', 'weekday 1'"),  # the Monday on or before the day
    "month": _DAY.format(", 'start of month'"),
}


def staff_counts(
    conn: apsw.Connection,
    guild_id: str,
    since: datetime | None = None,
    until: datetime | None = None,
    period: Literal["day", "week", "month"] = "day",
) -> tuple[StaffPeriodCount, ...]:
    """Credited joins per staff member per UTC period (`since` inclusive, `until` exclusive).

    Ordered by period, then most joins first, then staff id. Only joins that credit a staff member
    count: ambiguous and unknown joins credit nobody.
    """
    if period not in _PERIOD_SQL:
        raise ValueError(f"period must be day, week or month, not {period!r}")
    where = ["j.guild_id = ?", "j.staff_id IS NOT NULL"]
    params: list[Any] = [id_param(guild_id)]
    if since is not None:
        where.append("j.timestamp_us >= ?")
        params.append(to_us(since))
    if until is not None:
        where.append("j.timestamp_us < ?")
        params.append(to_us(until))
    period_sql = _PERIOD_SQL[period].replace("timestamp_us", "j.timestamp_us")
    sql = f"""
        SELECT {period_sql} AS period, CAST(j.staff_id AS TEXT), j.staff_username, max(j.lsn), count(*),
            count(DISTINCT j.user_id), count(DISTINCT CASE WHEN m.in_guild THEN j.user_id END)
        FROM joins AS j LEFT JOIN members AS m ON m.guild_id = j.guild_id AND m.user_id = j.user_id
        WHERE {" AND ".join(where)}
        GROUP BY period, j.staff_id
        ORDER BY period, count(*) DESC, CAST(j.staff_id AS TEXT)"""
    with conn:
        rows = _rows(conn, sql, params)
    return tuple(
        StaffPeriodCount(date.fromisoformat(period_text), staff, name, joins, members, still)
        for period_text, staff, name, _lsn, joins, members, still in rows
    )


@overload
def staff_profile(conn: apsw.Connection, guild_id: str, staff_id: str) -> StaffProfile | None: ...
@overload
def staff_profile(
    conn: apsw.Connection, guild_id: str, staff_id: None = None
) -> tuple[StaffProfile, ...]: ...
def staff_profile(
    conn: apsw.Connection, guild_id: str, staff_id: str | None = None
) -> StaffProfile | tuple[StaffProfile, ...] | None:
    """One staff member's current IB profile (None if they have none), or all of the guild's by staff id."""
    if staff_id is not None:
        with conn:
            rows = _rows(
                conn,
                f"SELECT {_STAFF_COLUMNS} FROM staff_ib WHERE guild_id = ? AND staff_id = ?",
                (guild_id, staff_id),
            )
        return _staff_profile(rows[0]) if rows else None
    with conn:
        rows = _rows(
            conn, f"SELECT {_STAFF_COLUMNS} FROM staff_ib WHERE guild_id = ? ORDER BY staff_id", (guild_id,)
        )
    return tuple(_staff_profile(row) for row in rows)


def stats(conn: apsw.Connection) -> ProjectionStats:
    """Row counts and joins per attribution kind, for `status` and metrics (no full scan of joins)."""

    def count(sql: str) -> int:
        return int(conn.execute(sql).get)

    with conn:
        by_kind = {
            kind: int(total)
            for kind, total in _rows(
                conn, "SELECT kind, sum(joins) FROM join_counts GROUP BY kind ORDER BY kind"
            )
        }
        result = ProjectionStats(
            applied_lsn=applied_lsn(conn),
            schema_version=int(conn.pragma("user_version")),
            joins=count("SELECT count(*) FROM joins"),
            leaves=count("SELECT count(*) FROM leaves"),
            members=count("SELECT count(*) FROM members"),
            members_in_guild=count("SELECT count(*) FROM members WHERE in_guild"),
            staff_profiles=count("SELECT count(*) FROM staff_ib"),
            invite_snapshots=count("SELECT count(*) FROM invite_snapshots"),
            snapshot_invites=count("SELECT count(*) FROM snapshot_invites"),
            erasures=count("SELECT count(*) FROM erasures"),
            settlements=count("SELECT count(*) FROM settlements"),
            joins_by_kind=by_kind,
        )
    return result


def _table_key(conn: apsw.Connection, table: str) -> list[str]:
    """The primary key's columns in key order (every column when there is none)."""
    info = _rows(conn, f'PRAGMA table_info("{table}")')  # cid, name, type, notnull, dflt_value, pk
    key = [str(name) for _cid, name, *_rest, pk in sorted(info, key=lambda col: col[5]) if pk]
    return key or [str(col[1]) for col in info]


def dump_tables(conn: apsw.Connection) -> Iterator[tuple[str, tuple[Any, ...]]]:
    """Every row of every projection table as (table, row), tables by name, rows by primary key.

    Deterministic: two databases hold the same projection exactly when their dumps are equal, whatever
    the batch sizes, replays or rebuild path that produced them. SQLite's own tables (sqlite_stat1 after
    ANALYZE) are left out: they describe storage, not content.
    """
    with conn:
        tables = [
            name
            for (name,) in conn.execute(
                "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
                "ORDER BY name"
            )
        ]
        for table in tables:
            # Ids as the text written, ordered as text: the dump (and the digest) of a projection does not
            # depend on how its schema version stores ids.
            readable = dict(text_columns(conn, table))
            columns = ", ".join(readable.values())
            order = ", ".join(readable[name] for name in _table_key(conn, table))
            for row in conn.execute(f'SELECT {columns} FROM "{table}" ORDER BY {order}'):
                yield table, tuple(row)


def projection_digest(conn: apsw.Connection) -> str:
    """SHA-256 over `dump_tables` (hex), for `verify`: equal digests, equal projections."""
    digest = hashlib.sha256(f"schema {SCHEMA_VERSION}\n".encode())
    for table, row in dump_tables(conn):
        digest.update(json.dumps([table, *row], ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()
