"""Staff input, checked before anything is asked of the ledger: pure functions that return clean values or
raise `BadInput` with a message a staff member can act on (it is shown to them as is, ephemerally)."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from urllib.parse import urlsplit

EXPORT_FORMATS = ("csv", "jsonl")
ExportFormat = Literal["csv", "jsonl"]

IB_CODE_MAX = 64
IB_LINK_MAX = 512
_IB_CODE = re.compile(rf"[A-Za-z0-9._-]{{1,{IB_CODE_MAX}}}\Z")
_SNOWFLAKE = re.compile(r"[0-9]{15,21}\Z")  # Discord ids: 64-bit, 17-20 digits today
_MENTION = re.compile(r"<@!?([0-9]+)>\Z")
_INVITE_CODE = re.compile(r"[A-Za-z0-9-]{2,32}\Z")
_INVITE_URL = re.compile(r"(?:https?://)?(?:www\.)?(?:discord(?:app)?\.com/invite|discord\.gg)/", re.I)
_DATE_HELP = "use YYYY-MM-DD (a UTC day) or ISO 8601 such as 2025-10-31T14:30:00Z"


class BadInput(ValueError):
    """Input a staff member can fix; the message says how."""


def snowflake(text: str, what: str = "user id") -> str:
    """A Discord id typed by hand (digits, or a pasted mention `<@123>`)."""
    value = text.strip()
    if mention := _MENTION.match(value):
        value = mention.group(1)
    if not _SNOWFLAKE.match(value) or int(value) >= 1 << 64:
        raise BadInput(
            f"`{_clip(text)}` is not a Discord {what}: expected 17 to 20 digits, such as 123456789012345678."
        )
    return value


def invite_code(text: str) -> str:
    """An invite code, or an invite link pasted whole (discord.gg/CODE)."""
    value = _INVITE_URL.sub("", text.strip(), count=1).strip("/")
    if not _INVITE_CODE.match(value):
        raise BadInput(
            f"`{_clip(text)}` is not an invite code: letters, digits and `-` only, such as `abc123XYZ`."
        )
    return value


def when(text: str, *, end_of_day: bool = False) -> datetime:
    """A moment in UTC. A bare day means its start, or with `end_of_day` the start of the next day (so
    `until: 2025-10-31` includes the 31st). A time without an offset is read as UTC."""
    value = text.strip()
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            moment = datetime.combine(day, time(), UTC)
            return moment + timedelta(days=1) if end_of_day else moment
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise BadInput(f"`{_clip(text)}` is not a date: {_DATE_HELP}.") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def date_range(since: str | None, until: str | None) -> tuple[datetime | None, datetime | None]:
    start = None if since is None else when(since)
    end = None if until is None else when(until, end_of_day=True)
    if start is not None and end is not None and start >= end:
        raise BadInput("`since` must be before `until`.")
    return start, end


def ib_link(text: str) -> str:
    value = text.strip()
    parts = urlsplit(value)
    if (
        len(value) > IB_LINK_MAX
        or parts.scheme != "https"
        or not parts.hostname
        or "." not in parts.hostname
        or any(c.isspace() for c in value)
    ):
        raise BadInput(
            f"`{_clip(text)}` is not an IB link: it must be an https:// address with a host, "
            f"such as https://vantage.com/ref/travis (at most {IB_LINK_MAX} characters)."
        )
    return value


def ib_code(text: str) -> str:
    value = text.strip()
    if not _IB_CODE.match(value):
        raise BadInput(
            f"`{_clip(text)}` is not an IB code: 1 to {IB_CODE_MAX} letters, digits, `-`, `_` or `.`, "
            "such as TRAVIS123."
        )
    return value


def export_format(text: str | None) -> ExportFormat:
    value = (text or "csv").strip().lower()
    if value == "csv":
        return "csv"
    if value == "jsonl":
        return "jsonl"
    raise BadInput(f"`{_clip(text or '')}` is not an export format: choose csv or jsonl.")


def _clip(text: str, limit: int = 60) -> str:
    """Echo a bad value back without letting it break the message's markdown or run on."""
    cleaned = text.replace("`", "'").replace("\n", " ")
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"
