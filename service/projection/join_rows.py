"""The joins row of a JoinRecorded WAL payload, decoded by a C JSON decoder: the rebuild's fast path.

A rebuild decodes a million join payloads; `json.loads` plus cattrs structuring plus building the row
cost ~16 µs each. `msgspec` decodes a payload straight into a typed struct in under a microsecond, and
the row is built from its fields. `join_row` returns exactly the tuple `apply._join_row(lsn,
convert.decode(1, payload))` returns, or None whenever it cannot be sure of that: the caller then takes
the generic path, which gives the same row or raises the same error as the live applier would.

Why the result is exact when msgspec accepts a payload:

- the struct's types are strict (no `int` from a float, a bool or a string; no `str` from null or a
  number; no missing or unknown key): every coercion cattrs would apply to odd input (`str(None)`,
  `int(1.0)`, a default for a missing key) makes msgspec refuse, so odd input goes the generic way;
- where both accept, they read the same values: same JSON grammar (no NaN, no leading zeros, no raw
  control characters), the last of duplicate keys wins in both, escapes and surrogate pairs decode alike,
  integers are exact at any size. What only `json.loads` accepts (a byte order mark, encoded lone
  surrogates, UTF-16) msgspec refuses, so it goes the generic way too (the tests pin each of these);
- times are parsed by the converter's own `datetime.fromisoformat` and turned into microseconds by the
  projection's formula; a time without offset goes the generic way, which raises;
- the flags texts are made by the live path's own `_json_list`, from the same strings; the candidates
  text by msgspec's encoder, which writes what `_json_list` (`json.dumps`, compact, non-ASCII kept)
  writes for every string but a lone surrogate, and msgspec never decodes one (20 times faster; 8 % of
  the benchmark's joins have candidates);
- the guild and staff ids are put in their stored form by the live path's own `STORED_IDS`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import attrs
import msgspec

from service.projection.apply import _json_list, encode_json
from service.projection.ids import STORED_IDS
from service.projection.schema import EPOCH, ONE_US
from service.records import AttributionKind, JoinFlag, JoinRecorded


class _Join(msgspec.Struct, forbid_unknown_fields=True):
    """JoinRecorded's JSON, every key required (a payload lacking one takes the converter's defaults, on
    the generic path); times as text, for the converter's own parser."""

    timestamp: str
    guild_id: str
    guild_name: str
    user_id: str
    username: str
    display_name: str
    kind: str
    invite_code: str | None
    staff_id: str | None
    staff_username: str | None
    uses_before: int | None
    uses_after: int | None
    candidates: list[str]
    flags: list[str]
    account_created_at: str | None
    decided_at: str | None


if _Join.__struct_fields__ != tuple(field.name for field in attrs.fields(JoinRecorded)):
    raise ImportError("join_rows._Join must list JoinRecorded's fields in order")

_decode = msgspec.json.Decoder(_Join).decode
_KINDS = frozenset(kind.value for kind in AttributionKind)
_FLAGS = frozenset(flag.value for flag in JoinFlag)
_fromisoformat = datetime.fromisoformat
_stored_ids = STORED_IDS

# The text of each flags combination seen so far (a handful): what `apply._flags_json` writes for it.
_flags_texts: dict[tuple[str, ...], str] = {(): "[]"}


def _flags_text(flags: list[str]) -> str | None:
    key = tuple(flags)
    text = _flags_texts.get(key)
    if text is None:
        if not _FLAGS.issuperset(key):
            return None  # the converter refuses an unknown flag
        text = _json_list(key)  # a JoinFlag's value is its text: what `_flags_json` encodes
        if len(_flags_texts) < 1024:
            _flags_texts[key] = text
    return text


def join_row(lsn: int, payload: bytes) -> tuple[Any, ...] | None:
    """The joins row (in `apply._INSERT_JOIN`'s column order) of a JoinRecorded payload, or None when the
    payload must be decoded the generic way."""
    try:
        j = _decode(payload)
        at = _fromisoformat(j.timestamp)
        created = j.account_created_at
        created_at = None if created is None else _fromisoformat(created)
        decided = j.decided_at
        decided_at = None if decided is None else _fromisoformat(decided)
    except (msgspec.DecodeError, ValueError):  # ValueError: bad UTF-8, a time that is not ISO 8601
        return None
    if (
        at.tzinfo is None
        or (created_at is not None and created_at.tzinfo is None)
        or (decided_at is not None and decided_at.tzinfo is None)
    ):
        return None
    kind = j.kind
    flags = _flags_texts.get(tuple(j.flags)) or _flags_text(j.flags)
    if kind not in _KINDS or flags is None:
        return None
    candidates = j.candidates
    return (
        lsn,
        (at - EPOCH) // ONE_US,
        None if created_at is None else (created_at - EPOCH) // ONE_US,
        None if decided_at is None else (decided_at - EPOCH) // ONE_US,
        encode_json(candidates).decode() if candidates else "[]",
        flags,
        _stored_ids[j.guild_id],
        j.guild_name,
        j.user_id,
        j.username,
        j.display_name,
        kind,
        j.invite_code,
        _stored_ids[j.staff_id],
        j.staff_username,
        j.uses_before,
        j.uses_after,
    )
