"""Staff input is checked before the ledger is asked, and bad input gets a message that says what to type."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from commands import options
from commands.options import BadInput


def test_snowflakes_accept_digits_and_pasted_mentions_only() -> None:
    assert options.snowflake(" 123456789012345678 ") == "123456789012345678"
    assert options.snowflake("<@!123456789012345678>") == "123456789012345678"
    for bad in ("12345", "abc", "1234567890123456789012", "99999999999999999999", "", "12 34"):
        with pytest.raises(BadInput, match="not a Discord user id"):
            options.snowflake(bad)


def test_invite_codes_and_pasted_invite_links() -> None:
    assert options.invite_code("abc123XYZ") == "abc123XYZ"
    assert options.invite_code("https://discord.gg/abc123XYZ") == "abc123XYZ"
    assert options.invite_code("discord.com/invite/pip-vault/") == "pip-vault"
    for bad in ("a", "abc def", "abc/../x", "x" * 33, "`boom`"):
        with pytest.raises(BadInput, match="not an invite code"):
            options.invite_code(bad)


def test_dates_take_a_day_or_iso_8601_and_read_naive_times_as_utc() -> None:
    assert options.when("2025-10-31") == datetime(2025, 10, 31, tzinfo=UTC)
    assert options.when("2025-10-31", end_of_day=True) == datetime(2025, 11, 1, tzinfo=UTC)
    assert options.when("2025-10-31T14:30:00Z") == datetime(2025, 10, 31, 14, 30, tzinfo=UTC)
    assert options.when("2025-10-31T16:30:00+02:00") == datetime(2025, 10, 31, 14, 30, tzinfo=UTC)
    assert options.when("2025-10-31 14:30") == datetime(2025, 10, 31, 14, 30, tzinfo=UTC)
    for bad in ("31/10/2025", "yesterday", "2025-13-01", "2025-10-32"):
        with pytest.raises(BadInput, match="YYYY-MM-DD"):
            options.when(bad)
    assert options.date_range("2025-10-01", "2025-10-31") == (
        datetime(2025, 10, 1, tzinfo=UTC),
        datetime(2025, 11, 1, tzinfo=UTC),
    )
    assert options.date_range(None, None) == (None, None)
    with pytest.raises(BadInput, match="before"):
        options.date_range("2025-11-01", "2025-10-01")


def test_ib_links_must_be_https_with_a_host() -> None:
    assert options.ib_link(" https://vantage.com/ref/travis ") == "https://vantage.com/ref/travis"
    bad_links = (
        "http://vantage.com/ref",
        "vantage.com/ref",
        "https://",
        "https://localhost/x",
        "javascript:alert(1)",
        "https://vantage.com/a b",
        "https://vantage.com/" + "x" * 600,
    )
    for bad in bad_links:
        with pytest.raises(BadInput, match="not an IB link"):
            options.ib_link(bad)


def test_ib_codes_are_bounded_letters_digits_and_dashes() -> None:
    assert options.ib_code("TRAVIS-123_a.b") == "TRAVIS-123_a.b"
    assert options.ib_code("x" * 64) == "x" * 64
    for bad in ("", "x" * 65, "TRAVIS 123", "<@1>", "code`"):
        with pytest.raises(BadInput, match="not an IB code"):
            options.ib_code(bad)


def test_export_format() -> None:
    assert options.export_format(None) == "csv"
    assert options.export_format("JSONL") == "jsonl"
    with pytest.raises(BadInput, match="csv or jsonl"):
        options.export_format("xlsx")


def test_a_bad_value_is_echoed_without_breaking_the_message() -> None:
    with pytest.raises(BadInput) as caught:
        options.invite_code("``` @everyone " + "y" * 100)
    message = str(caught.value)
    assert "```" not in message and len(message) < 200
