"""The projection equals a plain Python model of the log, whatever the batch splits, replays and restarts.

`ProjectionModel` applies records one at a time with dictionaries, the obvious way; the stateful test
drives the real applier (random batches that overlap what is applied, refused gaps, reopening the file,
rebuilds through both fast paths) and compares every table after every step. Record strategies and the
model are also used by the other projection test modules.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from service import convert
from service.projection import (
    ERASED,
    LsnGapError,
    apply_batch,
    apply_frames,
    dump_tables,
    open_database,
    rebuild_apply,
    rebuild_database,
    rebuild_from_frames,
)
from service.projection.schema import to_us
from service.records import (
    AttributionKind,
    InviteSnapshotTaken,
    InviteState,
    JoinFlag,
    JoinRecorded,
    JoinSettled,
    MemberLeft,
    Record,
    StaffIbRemoved,
    StaffIbSet,
    UserErased,
)
from wal import LogEntry

# Few ids, so that records collide: rejoins, leaves of members, erasures of someone who joined, staff
# who are also members, snapshots replacing snapshots.
# Snowflakes (stored as integers) beside texts that must stay text (see service.projection.ids).
GUILDS = ("g1", "811111111111111111")
USERS = ("u1", "1000000001180865442", "007", "900000000000000009")  # the last is staff who also joins
STAFF = ("900000000000000009", "s2")
CODES = ("abc", "def", "vanity")

texts = st.text(st.characters(exclude_categories=("Cs",)), max_size=10)  # no lone surrogates: not UTF-8
zones = st.sampled_from([UTC, timezone(timedelta(hours=2)), timezone(-timedelta(hours=5, minutes=30))])
times = st.datetimes(min_value=datetime(2015, 1, 1), max_value=datetime(2030, 12, 31), timezones=zones)
optional_times = st.none() | times
small_ints = st.none() | st.integers(0, 10_000)

joins = st.builds(
    JoinRecorded,
    timestamp=times,
    guild_id=st.sampled_from(GUILDS),
    guild_name=texts,
    user_id=st.sampled_from(USERS),
    username=texts,
    display_name=texts,
    kind=st.sampled_from(AttributionKind),
    invite_code=st.none() | st.sampled_from(CODES),
    staff_id=st.none() | st.sampled_from(STAFF),
    staff_username=st.none() | texts,
    uses_before=small_ints,
    uses_after=small_ints,
    candidates=st.lists(st.sampled_from(CODES), max_size=3).map(tuple),
    flags=st.lists(st.sampled_from(JoinFlag), unique=True, max_size=2).map(tuple),
    account_created_at=optional_times,
    decided_at=optional_times,
)
leaves = st.builds(
    MemberLeft, timestamp=times, guild_id=st.sampled_from(GUILDS), user_id=st.sampled_from(USERS)
)
staff_sets = st.builds(
    StaffIbSet,
    timestamp=times,
    guild_id=st.sampled_from(GUILDS),
    staff_id=st.sampled_from(STAFF),
    staff_username=texts,
    ib_link=texts,
    ib_code=texts,
    set_by=st.sampled_from(USERS),
)
staff_removals = st.builds(
    StaffIbRemoved,
    timestamp=times,
    guild_id=st.sampled_from(GUILDS),
    staff_id=st.sampled_from(STAFF),
    removed_by=st.sampled_from(USERS),
)
invite_states = st.builds(
    InviteState,
    code=st.sampled_from(CODES),
    uses=st.integers(0, 100),
    max_uses=st.integers(0, 100),
    inviter_id=st.none() | st.sampled_from(STAFF + USERS),
    inviter_name=st.none() | texts,
    expires_at=optional_times,
    channel_id=st.none() | st.just("c1"),
    created_at=optional_times,
)
snapshots = st.builds(
    InviteSnapshotTaken,
    timestamp=times,
    guild_id=st.sampled_from(GUILDS),
    guild_name=texts,
    invites=st.lists(invite_states, max_size=4).map(tuple),  # codes may repeat: the last one wins
    vanity_code=st.none() | st.just("vanity"),
    vanity_uses=small_ints,
)
erasures = st.builds(
    UserErased,
    timestamp=times,
    guild_id=st.sampled_from(GUILDS),
    user_id=st.sampled_from(USERS),
    requested_by=st.sampled_from(USERS),
)
settlements = st.builds(
    JoinSettled,
    timestamp=times,
    guild_id=st.sampled_from(GUILDS),
    join_lsn=st.integers(1, 40),  # often a join of the log, of a settleable kind or not; sometimes later
    user_id=st.sampled_from(USERS),
    invite_code=st.sampled_from(CODES),
    staff_id=st.none() | st.sampled_from(STAFF + USERS),
    staff_username=st.none() | texts,
    settled_by=st.sampled_from(USERS),
    settled_by_name=texts,
    reason=texts,
)
#: Any log record, joins most often, as in a real log.
records: st.SearchStrategy[Record] = st.one_of(
    joins, joins, joins, leaves, staff_sets, staff_removals, snapshots, erasures, settlements
)


def _json(items: list[str]) -> str:
    return json.dumps(items, ensure_ascii=False, separators=(",", ":"))


def _us(value: datetime | None) -> int | None:
    return None if value is None else to_us(value)


class ProjectionModel:
    """The projection's tables computed record by record with dicts; rows in the tables' column order."""

    def __init__(self) -> None:
        self.applied = 0
        self.joins: dict[int, list[Any]] = {}
        self.leaves: dict[int, tuple[Any, ...]] = {}
        self.members: dict[tuple[str, str], list[Any]] = {}
        self.staff: dict[tuple[str, str], tuple[Any, ...]] = {}
        self.snapshots: dict[str, tuple[Any, ...]] = {}
        self.invites: dict[tuple[str, str], list[Any]] = {}
        self.erasures: dict[int, tuple[Any, ...]] = {}
        self.settlements: dict[int, list[Any]] = {}
        self.counts: Counter[tuple[str, str]] = Counter()

    @classmethod
    def of(cls, log: list[Record]) -> ProjectionModel:
        model = cls()
        for lsn, record in enumerate(log, start=1):
            model.apply(lsn, record)
        return model

    def apply(self, lsn: int, r: Record) -> None:
        assert lsn == self.applied + 1
        self.applied = lsn
        if isinstance(r, JoinRecorded):
            self.joins[lsn] = [
                lsn, to_us(r.timestamp), r.guild_id, r.guild_name, r.user_id, r.username, r.display_name,
                r.kind.value, r.invite_code, r.staff_id, r.staff_username, r.uses_before, r.uses_after,
                _json(list(r.candidates)), _json([f.value for f in r.flags]), _us(r.account_created_at),
                _us(r.decided_at), None, None,
            ]  # fmt: skip
            member = self.members.get((r.guild_id, r.user_id))
            if member is None:
                self.members[r.guild_id, r.user_id] = [r.guild_id, r.user_id, 1, 1, lsn, lsn, None, None]
            else:
                member[2] = 1
                member[3] += 1
                member[4] = lsn if member[4] is None else member[4]
                member[5] = lsn
            self.counts[r.guild_id, r.kind.value] += 1
        elif isinstance(r, MemberLeft):
            self.leaves[lsn] = (lsn, to_us(r.timestamp), r.guild_id, r.user_id)
            member = self.members.setdefault(
                (r.guild_id, r.user_id), [r.guild_id, r.user_id, 0, 0, None, None]
            )
            member[2:] = [0, member[3], member[4], member[5], to_us(r.timestamp), lsn]
        elif isinstance(r, StaffIbSet):
            self.staff[r.guild_id, r.staff_id] = (
                r.guild_id, r.staff_id, r.staff_username, r.ib_link, r.ib_code, r.set_by,
                to_us(r.timestamp), lsn,
            )  # fmt: skip
        elif isinstance(r, StaffIbRemoved):
            self.staff.pop((r.guild_id, r.staff_id), None)
        elif isinstance(r, InviteSnapshotTaken):
            self.snapshots[r.guild_id] = (
                r.guild_id, r.guild_name, to_us(r.timestamp), lsn, r.vanity_code, r.vanity_uses
            )  # fmt: skip
            for key in [key for key in self.invites if key[0] == r.guild_id]:
                del self.invites[key]
            for inv in r.invites:
                self.invites[r.guild_id, inv.code] = [
                    r.guild_id, inv.code, inv.uses, inv.max_uses, inv.inviter_id, inv.inviter_name,
                    _us(inv.expires_at), inv.channel_id, _us(inv.created_at),
                ]  # fmt: skip
        elif isinstance(r, UserErased):
            redacted = 0
            for row in self.joins.values():
                if row[2] == r.guild_id and row[4] == r.user_id:
                    row[4], row[5], row[6], row[15], row[17] = None, ERASED, ERASED, None, lsn
                    redacted += 1
                if row[2] == r.guild_id and row[9] == r.user_id and row[10] is not None:
                    row[10] = ERASED
            for (guild, _code), invite in self.invites.items():
                if guild == r.guild_id and invite[4] == r.user_id and invite[5] is not None:
                    invite[5] = ERASED
            for settled in self.settlements.values():
                if settled[3] == r.guild_id and settled[4] == r.user_id:
                    settled[4], settled[10] = None, ERASED
                if settled[3] == r.guild_id and settled[8] == r.user_id:
                    settled[9] = ERASED
                if settled[3] == r.guild_id and settled[6] == r.user_id and settled[7] is not None:
                    settled[7] = ERASED
            self.staff.pop((r.guild_id, r.user_id), None)
            self.members.pop((r.guild_id, r.user_id), None)
            self.leaves = {k: v for k, v in self.leaves.items() if (v[2], v[3]) != (r.guild_id, r.user_id)}
            self.erasures[lsn] = (lsn, to_us(r.timestamp), r.guild_id, r.user_id, r.requested_by, redacted)
        elif isinstance(r, JoinSettled):
            join = self.joins.get(r.join_lsn)  # every join here is earlier than the settlement
            settleable = ("ambiguous", "offline_unknown")
            settles = join is not None and join[2] == r.guild_id and join[7] in settleable
            if join is not None and settles:
                join[8], join[9], join[10], join[18] = r.invite_code, r.staff_id, r.staff_username, lsn
            self.settlements[lsn] = [
                lsn, r.join_lsn, to_us(r.timestamp), r.guild_id, r.user_id, r.invite_code, r.staff_id,
                r.staff_username, r.settled_by, r.settled_by_name, r.reason, int(settles),
            ]  # fmt: skip
        else:
            raise AssertionError(f"unknown record {r!r}")

    def tables(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every table's rows ordered by primary key, as `dump_tables` lists them."""

        def rows(mapping: dict[Any, Any]) -> list[tuple[Any, ...]]:
            return [tuple(mapping[key]) for key in sorted(mapping)]

        return {
            "erasures": rows(self.erasures),
            "invite_snapshots": rows(self.snapshots),
            "join_counts": [(g, k, n) for (g, k), n in sorted(self.counts.items())],
            "joins": rows(self.joins),
            "leaves": rows(self.leaves),
            "members": rows(self.members),
            "meta": [("applied_lsn", self.applied)],
            "settlements": rows(self.settlements),
            "snapshot_invites": rows(self.invites),
            "staff_ib": rows(self.staff),
        }


def database_tables(conn: Any) -> dict[str, list[tuple[Any, ...]]]:
    tables: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    for table, row in dump_tables(conn):
        tables[table].append(row)
    for name in ProjectionModel().tables():
        tables.setdefault(name, [])
    return dict(tables)


class ApplierMachine(RuleBasedStateMachine):
    """The applier against the model: batches overlap what is applied, gaps are refused, the file is
    reopened, and rebuilds of the applied prefix give the same tables."""

    def __init__(self) -> None:
        super().__init__()
        self.directory = Path(tempfile.mkdtemp(prefix="projection-machine-"))
        self.path = self.directory / "projection.sqlite3"
        self.conn = open_database(self.path)
        self.log: list[Record] = []
        self.applied = 0

    def entries(self, first: int, last: int) -> list[tuple[int, Record]]:
        return [(lsn, self.log[lsn - 1]) for lsn in range(first, last + 1)]

    def apply(self, live_frames: bool, entries: list[tuple[int, Record]]) -> int:
        """Through `apply_batch` (decoded records) or the live applier's `apply_frames` (WAL entries)."""
        if not live_frames:
            return apply_batch(self.conn, entries)
        frames = [LogEntry(lsn, *convert.encode(record), segment="s", offset=0) for lsn, record in entries]
        return apply_frames(self.conn, frames)

    @rule(new=st.lists(records, min_size=1, max_size=6))
    def log_grows(self, new: list[Record]) -> None:
        self.log.extend(new)

    @precondition(lambda self: any(type(r) is JoinRecorded for r in self.log))
    @rule(data=st.data())
    def staff_settle_a_join_of_the_log(self, data: st.DataObject) -> None:
        # Random settlements seldom name a join of their guild: this one does (of any kind, so the kinds
        # a settlement must leave alone are tried too).
        lsn = data.draw(st.sampled_from([n for n, r in enumerate(self.log, 1) if type(r) is JoinRecorded]))
        joined = self.log[lsn - 1]
        assert isinstance(joined, JoinRecorded)
        settled = data.draw(settlements, label="settlement")
        self.log.append(attrs.evolve(settled, join_lsn=lsn, guild_id=joined.guild_id, user_id=joined.user_id))

    @precondition(lambda self: self.applied < len(self.log))
    @rule(data=st.data())
    def apply_a_batch_that_may_replay(self, data: st.DataObject) -> None:
        first = data.draw(st.integers(1, self.applied + 1), label="first")
        last = data.draw(st.integers(max(first, self.applied), len(self.log)), label="last")
        live = data.draw(st.booleans(), label="live_frames")
        assert self.apply(live, self.entries(first, last)) == max(self.applied, last)
        self.applied = max(self.applied, last)

    @precondition(lambda self: self.applied > 0)
    @rule(data=st.data())
    def replaying_applied_records_changes_nothing(self, data: st.DataObject) -> None:
        first = data.draw(st.integers(1, self.applied), label="first")
        live = data.draw(st.booleans(), label="live_frames")
        assert self.apply(live, self.entries(first, self.applied)) == self.applied

    @precondition(lambda self: len(self.log) >= self.applied + 3)
    @rule(data=st.data())
    def a_gap_is_refused_and_nothing_of_the_batch_applied(self, data: st.DataObject) -> None:
        first = data.draw(st.integers(self.applied + 3, len(self.log)), label="first")
        # The batch starts with a record that would apply, then jumps: all or nothing.
        batch = self.entries(self.applied + 1, self.applied + 1) + self.entries(first, len(self.log))
        with pytest.raises(LsnGapError) as raised:
            self.apply(data.draw(st.booleans(), label="live_frames"), batch)
        assert (raised.value.expected, raised.value.got) == (self.applied + 2, first)

    @rule()
    def restart(self) -> None:
        self.conn.close()
        self.conn = open_database(self.path)

    @rule(batch_size=st.integers(1, 7))
    def rebuilds_give_the_same_tables(self, batch_size: int) -> None:
        expected = database_tables(self.conn)
        rebuilt = self.directory / "rebuilt.sqlite3"
        assert (
            rebuild_database(rebuilt, iter(self.entries(1, self.applied)), batch_size=batch_size)
            == self.applied
        )
        other = open_database(rebuilt)
        try:
            assert database_tables(other) == expected
        finally:
            other.close()
        # From the log's frames: joins read from their payloads, the rest decoded, in log order.
        frames = [(lsn, *convert.encode(record)) for lsn, record in self.entries(1, self.applied)]
        assert rebuild_from_frames(rebuilt, iter(frames), batch_size=batch_size) == self.applied
        other = open_database(rebuilt)
        try:
            assert database_tables(other) == expected
        finally:
            other.close()
        fresh = open_database(":memory:")
        try:
            assert (
                rebuild_apply(fresh, iter(self.entries(1, self.applied)), batch_size=batch_size)
                == self.applied
            )
            assert database_tables(fresh) == expected
        finally:
            fresh.close()

    @invariant()
    def database_is_the_projection_of_the_applied_prefix(self) -> None:
        assert database_tables(self.conn) == ProjectionModel.of(self.log[: self.applied]).tables()

    def teardown(self) -> None:
        self.conn.close()
        shutil.rmtree(self.directory, ignore_errors=True)


ApplierMachine.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestApplierAgainstModel = ApplierMachine.TestCase
