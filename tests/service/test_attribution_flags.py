"""Flags on a join: rejoin, bot account, self-invite, young account, expired invite."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from service.attribution import AttributionConfig
from service.attribution.verdict import account_created_at
from service.events import MEMBER_FLAG_DID_REJOIN
from service.records import AttributionKind as Kind
from service.records import InviteState, JoinFlag
from tests.service.scripted_guild import T0, ScriptedGuild

DISCORD_EPOCH_MS = 1420070400000
OLD_USER = str(((int(datetime(2020, 5, 1, tzinfo=UTC).timestamp() * 1000) - DISCORD_EPOCH_MS) << 22) | 77)
STAFF = str(((int(datetime(2019, 1, 1, tzinfo=UTC).timestamp() * 1000) - DISCORD_EPOCH_MS) << 22) | 5)


def snowflake_created(when: datetime) -> str:
    return str(((int(when.timestamp() * 1000) - DISCORD_EPOCH_MS) << 22) | 12345)


def guild(**invite_fields: object) -> ScriptedGuild:
    a = InviteState(code="A", uses=3, inviter_id=STAFF, inviter_name="Staff A", **invite_fields)  # type: ignore[arg-type]
    g = ScriptedGuild((a, InviteState(code="B", uses=0, inviter_id="2", inviter_name="Staff B")))
    g.run(5)
    return g


def plain() -> tuple[ScriptedGuild, str]:
    g = guild()
    g.join(OLD_USER, "A")
    return g, OLD_USER


def rejoin_seen_before() -> tuple[ScriptedGuild, str]:
    g = guild()
    g.join(OLD_USER, "A")
    g.run(30)
    g.leave(OLD_USER)
    g.run(30)
    g.join(OLD_USER, "B")
    return g, OLD_USER


def rejoin_by_discord_flag() -> tuple[ScriptedGuild, str]:
    g = guild()
    g.join(OLD_USER, "A", flags=MEMBER_FLAG_DID_REJOIN)
    return g, OLD_USER


def bot_account() -> tuple[ScriptedGuild, str]:
    g = guild()
    g.join(OLD_USER, None, bot=True)
    return g, OLD_USER


def self_invite() -> tuple[ScriptedGuild, str]:
    g = guild()
    g.join(STAFF, "A")  # the invite's own inviter joins through it
    return g, STAFF


def young_account() -> tuple[ScriptedGuild, str]:
    g = guild()
    user = snowflake_created(T0 - timedelta(days=2))
    g.join(user, "A")
    return g, user


def expired_invite() -> tuple[ScriptedGuild, str]:
    g = guild(expires_at=T0 + timedelta(seconds=6))  # expires a second after the join, before the decision
    g.join(OLD_USER, "A")
    return g, OLD_USER


CASES: list[tuple[Callable[[], tuple[ScriptedGuild, str]], set[JoinFlag]]] = [
    (plain, set()),
    (rejoin_seen_before, {JoinFlag.REJOIN}),
    (rejoin_by_discord_flag, {JoinFlag.REJOIN}),
    (bot_account, {JoinFlag.BOT}),
    (self_invite, {JoinFlag.SELF_INVITE}),
    (young_account, {JoinFlag.YOUNG_ACCOUNT}),
    (expired_invite, {JoinFlag.EXPIRED_INVITE}),
]


@pytest.mark.parametrize(("script", "flags"), CASES, ids=lambda c: getattr(c, "__name__", None))
def test_each_flag_is_set_when_and_only_when_it_applies(
    script: Callable[[], tuple[ScriptedGuild, str]], flags: set[JoinFlag]
) -> None:
    g, user = script()
    g.run()
    latest = [r for r in g.joins() if r.user_id == user][-1]
    assert set(latest.flags) == flags


def test_the_first_join_of_a_rejoiner_has_no_rejoin_flag_and_the_second_has_it() -> None:
    g, user = rejoin_seen_before()
    g.run()
    first, second = [r for r in g.joins() if r.user_id == user]
    assert JoinFlag.REJOIN not in first.flags and JoinFlag.REJOIN in second.flags
    assert (first.invite_code, second.invite_code) == ("A", "B")


def test_a_bot_account_is_never_credited_even_if_a_count_rose_with_it() -> None:
    g = guild()
    g.join(OLD_USER, None, bot=True)
    g.invites["A"] = InviteState(code="A", uses=4, inviter_id=STAFF, inviter_name="Staff A")  # someone unseen
    g.run()
    record = g.record(OLD_USER)
    assert record.kind is Kind.UNKNOWN and record.staff_id is None


def test_a_self_invite_is_still_credited_to_its_inviter_with_the_flag() -> None:
    g, user = self_invite()
    g.run()
    record = g.record(user)
    assert record.staff_id == STAFF and JoinFlag.SELF_INVITE in record.flags


@pytest.mark.parametrize(("days", "young"), [(6, True), (8, False)])
def test_young_account_follows_the_configured_age(days: int, young: bool) -> None:
    config = AttributionConfig(young_account_days=7)
    g = ScriptedGuild((InviteState(code="A", uses=0, inviter_id="1"),), config=config)
    user = snowflake_created(T0 - timedelta(days=days))
    g.join(user, "A")
    g.run()
    assert (JoinFlag.YOUNG_ACCOUNT in g.record(user).flags) is young


def test_account_creation_is_read_from_the_snowflake() -> None:
    assert account_created_at("175928847299117063") == datetime(2016, 4, 30, 11, 18, 25, 796000, tzinfo=UTC)
    assert account_created_at("not a snowflake") is None
    g, user = plain()
    g.run()
    assert g.record(user).account_created_at == account_created_at(OLD_USER)
