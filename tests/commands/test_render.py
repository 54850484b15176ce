"""Embeds built from real projection results (the fake ledger is the real SQLite projection): the brief's
lookup answer, the ambiguous case, pages, the comparison, staff profiles and the status."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import pytest

from commands import render
from service.records import AttributionKind, JoinFlag, MemberLeft, StaffIbSet
from tests.commands.fakes import GUILD, SEGMENT, ProjectionLedger, join

JOHN, TRAVIS = "123456789012345678", "987654321098765432"


def fields(embed: Any) -> dict[str, str]:
    return {f.name: f.value for f in embed.fields}


def run(coro: Any) -> Any:
    return anyio.run(lambda: coro)


def test_lookup_answers_what_the_brief_asks_with_the_proof() -> None:
    ledger = ProjectionLedger()
    ledger.append(
        StaffIbSet(
            datetime.now(UTC), GUILD, TRAVIS, "TravisP", "https://vantage.com/ref/travis", "TRAVIS123", "1"
        )
    )
    [lsn] = ledger.append(join(JOHN, "john_doe", flags=(JoinFlag.YOUNG_ACCOUNT,)))
    embed = render.lookup_embed(run(ledger.lookup_user(GUILD, JOHN)))
    got = fields(embed)
    assert embed.title == "✅ User Join Details Found"
    assert "Username: john\\_doe" in got["👤 User Info"] and f"User ID: `{JOHN}`" in got["👤 User Info"]
    invite = got["🔗 Invite Details"]
    assert "Invite Code: `abc123XYZ`" in invite and "<t:1761921045:F>" in invite
    assert "2025-10-31T14:30:45+00:00" in invite and "Uses: 5 → 6" in invite
    staff = got["👨‍💼 Referring Staff Member"]
    assert "Staff: TravisP" in staff and "IB Link: https://vantage.com/ref/travis" in staff
    assert "IB Code: `TRAVIS123`" in staff
    assert got["🧭 Attribution"].startswith("**exact**")
    assert got["🚩 Flags"] == "young account"
    assert got["💾 Proof"] == f"Write-ahead log record LSN {lsn} in segment `{SEGMENT}`"


def test_an_ambiguous_join_lists_candidates_and_credits_nobody() -> None:
    ledger = ProjectionLedger()
    ledger.append(
        join(
            JOHN, "john_doe", code=None, staff=None, kind=AttributionKind.AMBIGUOUS, candidates=("abc", "def")
        )
    )
    got = fields(render.lookup_embed(run(ledger.lookup_user(GUILD, JOHN))))
    assert got["👨‍💼 Referring Staff Member"] == "No staff member is credited (ambiguous)."
    assert "Candidates: `abc`, `def`." in got["🧭 Attribution"]
    assert "No staff member is credited on a guess (`/settle_join` once you know)." in got["🧭 Attribution"]
    assert "Invite Code: none" in got["🔗 Invite Details"]


def test_a_credited_staff_member_without_a_profile_and_a_member_who_left_and_rejoined() -> None:
    ledger = ProjectionLedger()
    first = datetime(2025, 10, 1, tzinfo=UTC)
    ledger.append(join(JOHN, "john_doe", at=first))
    ledger.append(MemberLeft(first + timedelta(days=1), GUILD, JOHN))
    ledger.append(join(JOHN, "john_doe", at=first + timedelta(days=2), flags=(JoinFlag.REJOIN,)))
    got = fields(render.lookup_embed(run(ledger.lookup_user(GUILD, JOHN))))
    assert "IB Link: not set" in got["👨‍💼 Referring Staff Member"]
    assert got["📜 History"] == "2 joins, 1 leaves."
    assert got["🚩 Flags"] == "rejoin"


def test_someone_never_seen_gets_a_clear_answer() -> None:
    embed = render.lookup_embed(run(ProjectionLedger().lookup_user(GUILD, JOHN)))
    assert embed.title == "No join recorded" and JOHN in (embed.description or "")


def test_names_cannot_format_or_mention() -> None:
    assert render.md("**bold** @everyone `x`") == "\\*\\*bold\\*\\* @\u200beveryone \\`x\\`"
    assert render.md(None) == "—" and render.md("x" * 200, 10) == "x" * 9 + "…"


def test_a_page_of_logs_and_its_footer() -> None:
    ledger = ProjectionLedger()
    start = datetime(2025, 10, 1, tzinfo=UTC)
    ledger.append(
        *(join(f"1000000000000000{i:02d}", f"user{i}", at=start + timedelta(hours=i)) for i in range(12))
    )
    page = run(ledger.join_logs(GUILD, limit=10))
    embed = render.log_page_embed(page, 1, ["code abc123XYZ"])
    lines = (embed.description or "").splitlines()
    assert len(lines) == 10 and "user11" in lines[0] and "user2" in lines[-1]  # newest first
    assert embed.title == "📒 Invite logs (code abc123XYZ)"
    assert embed.footer is not None and "older joins on the next page" in embed.footer.text
    empty = render.log_page_embed(run(ledger.join_logs(GUILD, user_id="1")), 1, [])
    assert empty.description == "No joins match."


def test_the_comparison_puts_discrepancies_first() -> None:
    ledger = ProjectionLedger()
    ledger.append(*(join(f"10000000000000000{i}", f"u{i}") for i in range(3)))
    ledger.append(join("200000000000000000", "m", code="maya2024", staff=("5", "MayaK")))
    rows = run(ledger.invite_comparison(GUILD, {"abc123XYZ": 5, "maya2024": 1, "fresh": 0}))
    embed = render.comparison_embed(rows)
    lines = (embed.description or "").splitlines()
    assert lines[0].startswith("⚠️ `abc123XYZ` (TravisP): Discord **5**, ledger **3** (+2)")
    assert any(line.startswith("✅ `maya2024`") for line in lines)
    assert fields(embed)["Summary"] == "1 differ · 2 agree · 0 no longer on Discord"


def test_long_lists_say_how_many_did_not_fit() -> None:
    text = render._lines((f"line {i} " + "x" * 80 for i in range(100)), 1000)
    assert len(text) <= 1000 and text.endswith("more")


def test_staff_profiles_and_status() -> None:
    ledger = ProjectionLedger()
    ledger.append(
        StaffIbSet(datetime.now(UTC), GUILD, TRAVIS, "TravisP", "https://vantage.com/ref/travis", "T1", "42")
    )
    embed = render.staff_profiles_embed(run(ledger.staff_profile(GUILD)))
    assert "TravisP" in (embed.description or "") and "`T1`" in (embed.description or "")
    assert render.staff_profiles_embed([]).description == "No IB profile is set."
    status = render.status_embed(run(ledger.status()))
    got = fields(status)
    assert got["Durable LSN"] == "1" and got["Applied LSN"] == "1 (lag 0 records)" and got["Segments"] == "2"
    target = got["Backup: dir:///backups"]
    assert "Shipped LSN 1" in target and "Backlog: 1 segments (4.0 KiB)" in target and "timeout" in target
    assert got["Last recovery"] == "recovered 12 records"


@pytest.mark.parametrize(("count", "text"), [(10, "10 bytes"), (4096, "4.0 KiB"), (26 * 1024**2, "26.0 MiB")])
def test_sizes(count: int, text: str) -> None:
    assert render.size_text(count) == text
