"""Answers as Discord embeds: pure functions from query results to `interactions.Embed`.

The lookup follows the staff's original request (brief/invite-tracking-summary.md): user info, invite
details, the referring staff member with IB link and code, then what the ledger adds: how the invite was
attributed (with the candidates when several invites could explain the join, and no staff credited on a
guess), flags, and the proof, the log record's LSN and segment.

Times are shown as Discord timestamp markup (each reader sees their own time zone) followed by the ISO UTC
value the log holds. Text that came from users (names) is escaped so it cannot format or mention.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from interactions import Embed

from commands.ports import Status
from service.projection.queries import InviteComparison, JoinEntry, JoinPage, StaffProfile, UserLookup
from service.records import CREDITING_KINDS, AttributionKind
from service.settle import Settled

GREEN, ORANGE, RED, BLUE, GREY = 0x2ECC71, 0xE67E22, 0xE74C3C, 0x3498DB, 0x95A5A6
FIELD_MAX = 1024
DESCRIPTION_MAX = 4096

KIND_TEXT: Mapping[AttributionKind, str] = {
    AttributionKind.EXACT: "exactly one invite's uses rose by one",
    AttributionKind.NEW_INVITE: "a new invite was seen with its first use",
    AttributionKind.VANITY: "the server's vanity URL was used (it belongs to no staff member)",
    AttributionKind.MAX_USES: "an invite reached its use limit and vanished at this join",
    AttributionKind.AMBIGUOUS: "several invites could explain this join",
    AttributionKind.UNKNOWN: "no invite's uses changed (server discovery, a bot, or a widget)",
    AttributionKind.OFFLINE_RECONCILED: "joined while the bot was offline; the counts still name one invite",
    AttributionKind.OFFLINE_UNKNOWN: "joined while the bot was offline; the counts cannot name the invite",
}

_MARKDOWN = re.compile(r"([\\*_~`|>\[\]()#:-])")


def md(text: str | None, limit: int = 100) -> str:
    """User-supplied text, shown literally: markdown escaped, mentions defused, length capped."""
    if not text:
        return "—"
    clipped = text if len(text) <= limit else text[: limit - 1] + "…"
    return _MARKDOWN.sub(r"\\\1", clipped).replace("@", "@\u200b").replace("\n", " ")


def when(moment: datetime | None, style: str = "F") -> str:
    if moment is None:
        return "—"
    utc = moment.astimezone(UTC)
    return f"<t:{int(utc.timestamp())}:{style}> (`{utc.isoformat(timespec='seconds')}`)"


def _field(text: str) -> str:
    return text if len(text) <= FIELD_MAX else text[: FIELD_MAX - 1] + "…"


def _lines(lines: Iterable[str], limit: int, more: str = "… and {n} more") -> str:
    """Join lines up to `limit` characters, saying how many did not fit."""
    kept: list[str] = []
    size = 0
    pending = list(lines)
    for index, line in enumerate(pending):
        tail = more.format(n=len(pending) - index)
        if size + len(line) + 1 + len(tail) + 1 > limit:
            kept.append(tail)
            break
        kept.append(line)
        size += len(line) + 1
    return "\n".join(kept)


# --- /lookup_user_invite ----------------------------------------------------------------------------


def not_found_embed(user_id: str) -> Embed:
    return Embed(
        title="No join recorded",
        description=(
            f"The ledger has no join of <@{user_id}> (`{user_id}`) in this server.\n"
            "They may have joined before invite-ledger tracked joins, or through another server."
        ),
        color=ORANGE,
    )


def lookup_embed(result: UserLookup) -> Embed:
    join = result.latest_join
    if join is None:
        return not_found_embed(result.user_id)
    if join.erased:
        return Embed(
            title="User data erased",
            description=f"This member's personal data was erased on request; proof LSN {result.proof_lsn}.",
            color=GREY,
        )
    embed = Embed(title="✅ User Join Details Found", color=GREEN)
    embed.add_field(
        "👤 User Info",
        _field(
            f"Username: {md(join.username)}\nDisplay name: {md(join.display_name)}\nUser ID: `{join.user_id}`"
        ),
    )
    uses = "" if join.uses_before is None else f"\nUses: {join.uses_before} → {join.uses_after}"
    embed.add_field(
        "🔗 Invite Details",
        _field(f"Invite Code: {_code(join.invite_code)}\nJoined On: {when(join.timestamp)}{uses}"),
    )
    embed.add_field("👨‍💼 Referring Staff Member", _field(_staff_text(join, result.staff_profile)))
    embed.add_field("🧭 Attribution", _field(_attribution_text(join)))
    if join.flags:
        embed.add_field("🚩 Flags", ", ".join(flag.value.replace("_", " ") for flag in join.flags))
    history = _history_text(result)
    if history:
        embed.add_field("📜 History", _field(history))
    segment = f" in segment `{result.proof_segment}`" if result.proof_segment else ""
    embed.add_field("💾 Proof", f"Write-ahead log record LSN {result.proof_lsn}{segment}")
    embed.set_footer(f"Data source: the write-ahead log (projection at LSN {result.applied_lsn})")
    return embed


def _code(code: str | None) -> str:
    return "none" if not code else f"`{code}`"


def credits(join: JoinEntry) -> bool:
    """Does the join credit a staff member: by the bot's verdict, or settled by hand?"""
    return join.staff_id is not None and (join.kind in CREDITING_KINDS or join.settlement is not None)


def _staff_text(join: JoinEntry, profile: StaffProfile | None) -> str:
    if not credits(join):
        return f"No staff member is credited ({join.kind.value})."
    lines = [f"Staff: {md(join.staff_username)} (<@{join.staff_id}>)"]
    if profile is None:
        lines.append("IB Link: not set\nIB Code: not set\n(set it with `/staff_ib set`)")
    else:
        lines.append(f"IB Link: {profile.ib_link}\nIB Code: `{profile.ib_code}`")
    return "\n".join(lines)


def _attribution_text(join: JoinEntry) -> str:
    text = f"**{join.kind.value}**: {KIND_TEXT.get(join.kind, join.kind.value)}."
    if join.kind is AttributionKind.AMBIGUOUS:
        candidates = ", ".join(f"`{c}`" for c in join.candidates) or "none left to compare"
        text += f"\nCandidates: {candidates}."
        if join.settlement is None:
            text += "\nNo staff member is credited on a guess (`/settle_join` once you know)."
    if (settled := join.settlement) is not None:
        text += (
            f"\n**Settled by hand** by {md(settled.settled_by_name, 40)} (<@{settled.settled_by}>) "
            f"{when(settled.timestamp, 'R')} (LSN {settled.lsn}): {md(settled.reason, 300)}"
        )
    return text


def _history_text(result: UserLookup) -> str:
    joins = sum(1 for e in result.history if e.event == "join")
    leaves = len(result.history) - joins
    if joins <= 1 and leaves == 0:
        return ""
    text = f"{joins} joins, {leaves} leaves."
    if result.member is not None and not result.member.in_guild:
        text += f" Left {when(result.member.last_left_at, 'R')}."
    return text


# --- /view_invite_logs ------------------------------------------------------------------------------


def log_line(entry: JoinEntry) -> str:
    staff = f" · staff {md(entry.staff_username, 40)}" if entry.staff_id else ""
    who = "[erased]" if entry.erased else f"{md(entry.username, 40)} (`{entry.user_id}`)"
    code = _code(entry.invite_code)
    kind = entry.kind.value + (", settled" if entry.settlement is not None else "")
    return f"`#{entry.lsn}` {when_short(entry.timestamp)} {who} · {code}{staff} · {kind}"


# --- /settle_join -----------------------------------------------------------------------------------


def settled_text(settled: Settled) -> str:
    record, join = settled.record, settled.join
    staff = f"<@{record.staff_id}>"
    if record.staff_username:
        staff = f"{md(record.staff_username)} ({staff})"
    text = (
        f"Settled: the join of <@{record.user_id}> on {when(join.timestamp)} (LSN {join.lsn}, recorded "
        f"{join.kind.value}) used `{record.invite_code}` and is credited to {staff}. On disk in the log "
        f"(LSN {settled.lsn}); lookups, logs, exports and counts show it from now on."
    )
    if join.settlement is not None:
        before = join.settlement
        text += (
            f" It replaces the settlement by {md(before.settled_by_name, 40)} {when(before.timestamp, 'R')} "
            f"(LSN {before.lsn}, `{join.invite_code}`), which stays on record."
        )
    return text


def when_short(moment: datetime) -> str:
    return f"<t:{int(moment.timestamp())}:f>"


def log_page_embed(page: JoinPage, page_number: int, filters: Sequence[str]) -> Embed:
    title = "📒 Invite logs" + (f" ({', '.join(filters)})" if filters else "")
    if not page.entries:
        description = "No joins match." if page_number == 1 else "No older joins."
    else:
        description = _lines((log_line(e) for e in page.entries), DESCRIPTION_MAX)
    embed = Embed(title=title[:256], description=description, color=BLUE)
    more = "older joins on the next page" if page.next_cursor is not None else "no older joins"
    embed.set_footer(f"Page {page_number} · newest first · {more}")
    return embed


# --- /sync_member_invites ---------------------------------------------------------------------------


def comparison_embed(rows: Sequence[InviteComparison]) -> Embed:
    off = [r for r in rows if r.is_discrepancy]
    gone = [r for r in rows if r.delta is None]
    agree = len(rows) - len(off) - len(gone)

    def line(row: InviteComparison) -> str:
        inviter = f" ({md(row.inviter_name, 32)})" if row.inviter_name else ""
        if row.delta is None:
            return f"🕳️ `{row.code}`{inviter}: gone from Discord; ledger {row.ledger_count}"
        mark = "⚠️" if row.delta else "✅"
        return (
            f"{mark} `{row.code}`{inviter}: Discord **{row.discord_uses}**, ledger **{row.ledger_count}**"
            f" ({row.delta:+d})"
        )

    color = ORANGE if off else GREEN
    description = _lines((line(r) for r in rows), DESCRIPTION_MAX - 200) if rows else "No invites."
    embed = Embed(title="🔄 Discord uses vs ledger joins", description=description, color=color)
    embed.add_field(
        "Summary", f"{len(off)} differ · {agree} agree · {len(gone)} no longer on Discord", inline=False
    )
    embed.set_footer(
        "Discord counts every use; the ledger counts joins it attributed to the code. A positive difference "
        "is uses the ledger could not tie to this code (ambiguous, unknown, or before tracking began)."
    )
    return embed


# --- /staff_ib --------------------------------------------------------------------------------------


def staff_profiles_embed(profiles: Sequence[StaffProfile]) -> Embed:
    if not profiles:
        return Embed(title="Staff IB profiles", description="No IB profile is set.", color=GREY)
    lines = [
        f"**{md(p.staff_username, 40)}** (<@{p.staff_id}>) · {p.ib_link} · `{p.ib_code}` · "
        f"set by <@{p.set_by}> <t:{int(p.updated_at.timestamp())}:R>"
        for p in profiles
    ]
    return Embed(title="Staff IB profiles", description=_lines(lines, DESCRIPTION_MAX), color=BLUE)


# --- /ledger_status ---------------------------------------------------------------------------------


def status_embed(status: Status) -> Embed:
    lag = status.durable_lsn - status.applied_lsn
    embed = Embed(title="📊 Ledger status", color=GREEN if lag == 0 else ORANGE)
    embed.add_field("Durable LSN", str(status.durable_lsn), inline=True)
    embed.add_field("Applied LSN", f"{status.applied_lsn} (lag {lag} records)", inline=True)
    embed.add_field("Segments", str(status.segments), inline=True)
    if not status.targets:
        embed.add_field("Backups", "No backup target is configured.", inline=False)
    for url, target in list(status.targets.items())[:20]:
        embed.add_field(f"Backup: {url}"[:256], _field(_target_text(target)), inline=False)
    if status.last_recovery:
        embed.add_field("Last recovery", _field(status.last_recovery), inline=False)
    return embed


def _target_text(target: Any) -> str:
    lines = [f"Shipped LSN {target.shipped_lsn}"]
    backlog = f"Backlog: {target.backlog_segments} segments ({size_text(target.backlog_bytes)})"
    if target.oldest_unshipped_age_s:
        backlog += f", oldest waiting {target.oldest_unshipped_age_s:.0f} s"
    lines.append(backlog)
    lines.append("Last backup: " + (when(target.last_success_at, "R") if target.last_success_at else "never"))
    if target.last_error:
        lines.append(f"Last error: {md(target.last_error, 300)}")
    return "\n".join(lines)


def size_text(count: int) -> str:
    if count < 1024:
        return f"{count} bytes"
    size, unit = count / 1024, "KiB"
    for bigger in ("MiB", "GiB"):
        if size < 1024:
            break
        size, unit = size / 1024, bigger
    return f"{size:.1f} {unit}"
