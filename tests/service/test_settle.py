"""Settling a join by hand (`service.settle`): what may be settled and to what, on real lookups from the
projection, and what the projection then shows (the join credited, the settlement in the lookup and logs)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from service import projection
from service.records import AttributionKind, InviteSnapshotTaken, InviteState, JoinRecorded
from service.settle import REASON_MAX, SettleRefused, SettleRequest, settlement

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
G = "111222333444555666"
ALICE, BOB = "200000000000000001", "200000000000000002"  # staff
U1, U2 = "300000000000000001", "300000000000000002"  # members
ADMIN = "400000000000000001"


def joined(user: str, at: int, kind: AttributionKind, **kw: object) -> JoinRecorded:
    credited = kind is AttributionKind.EXACT
    return JoinRecorded(
        timestamp=T0 + timedelta(seconds=at),
        guild_id=G,
        guild_name="PipVault",
        user_id=user,
        username=f"user{user[-1]}",
        display_name=f"User {user[-1]}",
        kind=kind,
        invite_code="alice1" if credited else None,
        staff_id=ALICE if credited else None,
        staff_username="Alice" if credited else None,
        **kw,  # type: ignore[arg-type]
    )


@pytest.fixture
def conn():
    conn = projection.open_database(":memory:")
    invites = (InviteState("alice1", 3, 0, ALICE, "Alice"), InviteState("bob1", 5, 0, BOB, "Bob"))
    records = [
        InviteSnapshotTaken(T0, G, "PipVault", invites, "pipvault", 9),  # 1
        joined(U1, 1, AttributionKind.AMBIGUOUS, candidates=("alice1", "bob1")),  # 2
        joined(U1, 2, AttributionKind.EXACT),  # 3: a rejoin the bot credited
        joined(U2, 3, AttributionKind.OFFLINE_UNKNOWN),  # 4: no candidates
        joined(U2, 4, AttributionKind.VANITY),  # 5
    ]
    projection.apply_batch(conn, list(enumerate(records, start=1)))
    yield conn
    conn.close()


def settle(
    conn, user: str, code: str, *, reason: str = "showed the link in a DM", join_lsn: int | None = None
):
    request = SettleRequest(G, user, code, ADMIN, "admin", reason, join_lsn)
    found = projection.lookup_user(conn, G, user)
    record, join = settlement(request, found, projection.invite_owner(conn, G, code), T0 + timedelta(days=1))
    lsn = projection.applied_lsn(conn) + 1
    projection.apply_batch(conn, [(lsn, record)])
    return lsn, record, join


def test_an_ambiguous_join_is_settled_to_a_candidate_and_then_counts_for_its_staff_member(conn):
    lsn, record, join = settle(conn, U1, "bob1", join_lsn=2)
    assert (join.lsn, join.kind, join.settlement) == (2, AttributionKind.AMBIGUOUS, None)
    assert (record.join_lsn, record.staff_id, record.staff_username) == (2, BOB, "Bob")
    [entry] = projection.join_logs(conn, G, staff_id=BOB).entries
    assert (entry.lsn, entry.kind, entry.invite_code, entry.staff_username) == (2, "ambiguous", "bob1", "Bob")
    assert entry.settlement is not None and entry.settlement.lsn == lsn
    assert entry.settlement.reason == "showed the link in a DM" and entry.settlement.settled_by == ADMIN
    counts = {row.code: row.ledger_count for row in projection.invite_comparison(conn, G, {})}
    assert counts == {"alice1": 1, "bob1": 1}
    history = projection.lookup_user(conn, G, U1).history
    assert [e.join.settlement is not None for e in history if e.join is not None] == [True, False]
    exported = [json.loads(line) for line in b"".join(projection.export_jsonl(conn, guild_id=G)).splitlines()]
    settled = {row["lsn"]: (row["attribution_kind"], row["staff_id"], row["settled_lsn"]) for row in exported}
    assert settled[2] == ("ambiguous", BOB, lsn) and settled[3] == ("exact", ALICE, None)


def test_a_correction_replaces_the_settlement_in_force_and_both_stay_on_record(conn):
    first, _, _ = settle(conn, U1, "bob1", join_lsn=2)
    second, _, join = settle(conn, U1, "alice1", join_lsn=2, reason="Bob's link was a forward of Alice's")
    assert join.settlement is not None and join.settlement.lsn == first  # what the reply says it replaces
    entry = projection.join_logs(conn, G, user_id=U1).entries[-1]
    assert (entry.invite_code, entry.staff_id, entry.settlement.lsn) == ("alice1", ALICE, second)  # type: ignore[union-attr]
    assert conn.execute("SELECT count(*) FROM settlements WHERE join_lsn = 2").get == 2
    assert projection.stats(conn).settlements == 2


def test_the_latest_join_is_settled_when_no_lsn_is_given(conn):
    with pytest.raises(SettleRefused, match=r"recorded this join \(LSN 3\) as \*\*exact\*\*"):
        settle(conn, U1, "bob1")  # U1's latest join was credited by the bot


@pytest.mark.parametrize(
    ("user", "code", "join_lsn", "refusal"),
    [
        (U1, "carol1", 2, r"allow only `alice1`, `bob1`.*`carol1` cannot have been used"),
        (U2, "bob1", 5, r"as \*\*vanity\*\*: decided by the invite counts"),
        (U2, "pipvault", 4, r"does not know who owns `pipvault`"),
        (U2, "bob1", 9, r"has no join with LSN 9 in this server; their joins: 4, 5"),
        (ADMIN, "bob1", None, r"No join of <@400000000000000001> is recorded"),
    ],
)
def test_what_cannot_be_settled_is_refused_with_the_reason(conn, user, code, join_lsn, refusal):
    before = projection.dump_tables(conn)
    with pytest.raises(SettleRefused, match=refusal):
        settle(conn, user, code, join_lsn=join_lsn)
    assert list(projection.dump_tables(conn)) == list(before)


def test_an_offline_join_without_candidates_settles_to_any_invite_the_ledger_knows(conn):
    _, record, _ = settle(conn, U2, "alice1", join_lsn=4)
    assert (record.staff_id, record.staff_username) == (ALICE, "Alice")


@pytest.mark.parametrize(
    ("reason", "refusal"), [("  \n ", "Say why"), ("x" * (REASON_MAX + 1), f"keep it to {REASON_MAX}")]
)
def test_a_settlement_needs_a_reason_of_reasonable_length(conn, reason, refusal):
    with pytest.raises(SettleRefused, match=refusal):
        settle(conn, U1, "bob1", join_lsn=2, reason=reason)


def test_the_reason_is_kept_on_one_line():
    request = SettleRequest(G, U1, "bob1", ADMIN, "admin", " the member\n showed   it ", 2)
    conn = projection.open_database(":memory:")
    try:
        projection.apply_batch(
            conn,
            [
                (1, InviteSnapshotTaken(T0, G, "PipVault", (InviteState("bob1", 1, 0, BOB, "Bob"),))),
                (2, joined(U1, 1, AttributionKind.AMBIGUOUS, candidates=("bob1", "x"))),
            ],
        )
        found = projection.lookup_user(conn, G, U1)
        record, _ = settlement(request, found, projection.invite_owner(conn, G, "bob1"), T0)
    finally:
        conn.close()
    assert record.reason == "the member showed it"
