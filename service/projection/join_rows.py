"""The joins row of a JoinRecorded WAL payload, read straight from its JSON text: the rebuild's fast path.

A rebuild decodes a million join payloads; `json.loads` plus cattrs structuring plus building the row
cost ~16 µs each. The payloads `service.convert.encode` writes have one fixed shape (compact JSON, keys in
field order, times in UTC), and for that shape one regular expression yields every field as text, about
six times cheaper. `join_row` returns exactly the tuple `apply._join_row(lsn, convert.decode(1, payload))`
returns, or None whenever it cannot be sure of that (escapes, control characters, another key order, an
unknown kind or flag, a time without offset...): the caller then takes the generic path, which gives
the same row or raises the same error as the live applier would.

Why the shortcuts are exact, for a payload the pattern matches:

- no backslash in the payload means no escapes, so every `"` delimits a string and a string's JSON text is
  its value; no control character means `json.loads` would not refuse it either;
- integers match JSON's grammar (no leading zeros, no fraction), so `int()` gives what `json.loads` does;
- times go through the converter's own `datetime.fromisoformat` and the projection's microsecond formula;
- a candidates list of plain strings is already the text `_json_list` would write for it; a flags list is
  checked once per distinct text against what the live path writes for it.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

import attrs

from service.projection.schema import EPOCH, ONE_US
from service.records import AttributionKind, JoinFlag, JoinRecorded

_STR = '"([^"]*)"'
_OPT_STR = '(?:"([^"]*)"|null)'
_OPT_INT = "(?:(-?(?:0|[1-9][0-9]*))|null)"
_LIST = r"(\[[^]]*\])"
_FIELDS = (
    ("timestamp", _STR),
    ("guild_id", _STR),
    ("guild_name", _STR),
    ("user_id", _STR),
    ("username", _STR),
    ("display_name", _STR),
    ("kind", _STR),
    ("invite_code", _OPT_STR),
    ("staff_id", _OPT_STR),
    ("staff_username", _OPT_STR),
    ("uses_before", _OPT_INT),
    ("uses_after", _OPT_INT),
    ("candidates", _LIST),
    ("flags", _LIST),
    ("account_created_at", _OPT_STR),
    ("decided_at", _OPT_STR),
)
if tuple(name for name, _ in _FIELDS) != tuple(field.name for field in attrs.fields(JoinRecorded)):
    raise ImportError("join_rows._FIELDS must list JoinRecorded's fields in order (the encoder's key order)")

_PAYLOAD = re.compile("{" + ",".join(f'"{name}":{pattern}' for name, pattern in _FIELDS) + "}")
_STRING_LIST = re.compile(r'\[(?:"[^"]*"(?:,"[^"]*")*)?\]')
# Bytes json.loads would unescape or refuse inside a string; a payload with any of them takes the generic
# path. (They are ASCII, so they never occur inside a multi-byte UTF-8 sequence.)
_NOT_PLAIN = bytes(range(0x20)) + b"\\"
_KINDS = frozenset(kind.value for kind in AttributionKind)
_fromisoformat = datetime.fromisoformat

# The flags texts seen so far that the live path writes back unchanged (a handful of combinations).
_plain_flags: set[str] = {"[]"}


def _flags_are_plain(text: str) -> bool:
    if text in _plain_flags:
        return True
    try:
        values = json.loads(text)
        canonical = json.dumps([JoinFlag(value).value for value in values], separators=(",", ":"))
    except (ValueError, TypeError):
        return False
    if canonical != text:
        return False
    if len(_plain_flags) < 1024:
        _plain_flags.add(text)
    return True


def join_row(lsn: int, payload: bytes) -> tuple[Any, ...] | None:
    """The joins row (in `apply._INSERT_JOIN`'s column order) of a JoinRecorded payload, or None when the
    payload is not in the encoder's plain shape and must be decoded the generic way."""
    if len(payload.translate(None, _NOT_PLAIN)) != len(payload):
        return None
    try:
        match = _PAYLOAD.fullmatch(payload.decode())
    except UnicodeDecodeError:
        return None
    if match is None:
        return None
    (ts, guild_id, guild_name, user_id, username, display_name, kind, invite_code, staff_id, staff_username,
     uses_before, uses_after, candidates, flags, created, decided) = match.groups()  # fmt: skip
    if kind not in _KINDS or not (flags == "[]" or _flags_are_plain(flags)):
        return None
    if candidates != "[]" and _STRING_LIST.fullmatch(candidates) is None:
        return None
    # The converter's datetime and `to_us`, written out (three calls fewer per join); a time the converter
    # would refuse (no offset, not ISO 8601) goes the generic way, which raises as the live path does.
    try:
        at = _fromisoformat(ts)
        created_at = None if created is None else _fromisoformat(created)
        decided_at = None if decided is None else _fromisoformat(decided)
    except ValueError:
        return None
    if (
        at.tzinfo is None
        or (created_at and created_at.tzinfo is None)
        or (decided_at and decided_at.tzinfo is None)
    ):
        return None
    return (
        lsn,
        (at - EPOCH) // ONE_US,
        None if created_at is None else (created_at - EPOCH) // ONE_US,
        None if decided_at is None else (decided_at - EPOCH) // ONE_US,
        candidates,
        flags,
        guild_id,
        guild_name,
        user_id,
        username,
        display_name,
        kind,
        invite_code,
        staff_id,
        staff_username,
        None if uses_before is None else int(uses_before),
        None if uses_after is None else int(uses_after),
    )
