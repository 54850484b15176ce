"""JoinRecorded's WAL payload written by msgspec: the same bytes as the converter's generic path, faster.

Every join is encoded once on the event loop before it is logged; the generic path (cattrs unstructure,
`json.dumps`, UTF-8) costs ~10 µs a join, this one ~2 µs. The log is permanent and its readers (the
rebuild's strict `join_rows` struct among them) rely on its exact shape, so `join_payload` returns the
generic path's bytes exactly, or None whenever it cannot vouch for that and the caller must take the
generic path (which then gives its bytes or raises its error, as before).

Why the bytes are the same when it answers:

- keys in field order, compact separators, UTF-8 without `\\uXXXX` escapes for non-ASCII: msgspec writes
  a dict in insertion order, compactly, and escapes exactly what `json.dumps(ensure_ascii=False)` escapes
  (checked for every code point); a lone surrogate makes both raise, and then we step aside;
- values only of the types both write alike: str, int (any size), None, the record's enums (by value),
  tuples of str or of JoinFlag; any other type (a float, a bool, a str subclass) goes the generic way;
- times: the generic path writes `astimezone(UTC).isoformat()`; msgspec writes a UTC datetime in the
  same digits (zero-padded year, fraction only when there are microseconds) but ends it with `Z` instead
  of `+00:00`, which is patched below. A naive time goes the generic way, which refuses it.
"""

from __future__ import annotations

from datetime import UTC, datetime

import attrs
import msgspec

from service.records import AttributionKind, JoinFlag, JoinRecorded

_encode = msgspec.json.encode
_PLAIN = frozenset({str, int, type(None)})
_FLAG = frozenset({JoinFlag})
_STR = frozenset({str})
_KEYS = (
    "timestamp",
    "guild_id",
    "guild_name",
    "user_id",
    "username",
    "display_name",
    "kind",
    "invite_code",
    "staff_id",
    "staff_username",
    "uses_before",
    "uses_after",
    "candidates",
    "flags",
    "account_created_at",
    "decided_at",
)
if _KEYS != tuple(field.name for field in attrs.fields(JoinRecorded)):
    raise ImportError("join_payload must write JoinRecorded's fields in order")

# The payload's first value is the timestamp; its last two are the other times, after this key. Neither
# the key nor a bare `"` can occur inside a string value (JSON escapes it), so what follows the key's last
# occurrence is times and nulls only, and the first `Z"` after the opening `{"timestamp":"` ends the time.
_TIME_START = len(b'{"timestamp":"')
_LAST_TIMES = b',"account_created_at":'


def _utc(value: object) -> datetime | None:
    """The time in UTC, or None when the generic path must handle it (not a datetime, or naive)."""
    if type(value) is not datetime or value.tzinfo is None:
        return None
    return value if value.tzinfo is UTC else value.astimezone(UTC)


def join_payload(r: JoinRecorded) -> bytes | None:
    """The generic path's payload of `r`, or None when the generic path must make it."""
    at = _utc(r.timestamp)
    created = r.account_created_at
    decided = r.decided_at
    if (
        at is None
        or (created is not None and (created := _utc(created)) is None)
        or (decided is not None and (decided := _utc(decided)) is None)
        or type(r.kind) is not AttributionKind
        or type(r.candidates) is not tuple
        or type(r.flags) is not tuple
        or not _STR.issuperset(map(type, r.candidates))
        or not _FLAG.issuperset(map(type, r.flags))
        or not _PLAIN.issuperset(
            map(
                type,
                (
                    r.guild_id,
                    r.guild_name,
                    r.user_id,
                    r.username,
                    r.display_name,
                    r.invite_code,
                    r.staff_id,
                    r.staff_username,
                    r.uses_before,
                    r.uses_after,
                ),
            )
        )
    ):
        return None
    try:
        b = _encode(
            {
                "timestamp": at,
                "guild_id": r.guild_id,
                "guild_name": r.guild_name,
                "user_id": r.user_id,
                "username": r.username,
                "display_name": r.display_name,
                "kind": r.kind,
                "invite_code": r.invite_code,
                "staff_id": r.staff_id,
                "staff_username": r.staff_username,
                "uses_before": r.uses_before,
                "uses_after": r.uses_after,
                "candidates": r.candidates,
                "flags": r.flags,
                "account_created_at": created,
                "decided_at": decided,
            }
        )
    except (msgspec.EncodeError, UnicodeEncodeError, OverflowError):
        return None  # a lone surrogate: the generic path raises its own error
    end = b.index(b'Z"', _TIME_START)
    last = b.rindex(_LAST_TIMES)
    return b[:end] + b"+00:00" + b[end + 1 : last] + b[last:].replace(b'Z"', b'+00:00"')
