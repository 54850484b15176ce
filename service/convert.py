"""The one cattrs converter of the project: records and events to JSON-ready dicts and back.

Datetimes travel as ISO 8601 strings with their UTC offset; enums as their values; tuples as lists.
`encode` and `decode` give the WAL payload bytes for a record and its frame type code. A record type may
have a faster payload encoder (`_PAYLOAD_ENCODERS`) that gives the generic path's exact bytes or None.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import cattrs

from service.join_payload import join_payload
from service.records import RECORD_TYPES, TYPE_CLASSES, JoinRecorded, Record

_converter = cattrs.Converter(forbid_extra_keys=False)


def _dt_to_str(value: datetime) -> str:
    if value.tzinfo is None:  # a naive time is a bug upstream; refuse to guess its zone
        raise ValueError(f"naive datetime {value!r}: every time in the log must carry its UTC offset")
    return value.astimezone(UTC).isoformat()


def _str_to_dt(value: Any, _type: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError(f"time without offset in the log: {value!r}")
    return parsed


_converter.register_unstructure_hook(datetime, _dt_to_str)
_converter.register_structure_hook(datetime, _str_to_dt)


def register_value_type(
    cls: type[Any], structure_hook: Callable[[Any, Any], Any], unstructure_hook: Callable[[Any], Any]
) -> None:
    """Teach the one converter a value type owned by another module (service.config's `Secret`): that
    module keeps its type, and this module need not import it (which would make an import cycle)."""
    _converter.register_structure_hook(cls, structure_hook)
    _converter.register_unstructure_hook(cls, unstructure_hook)


def unstructure(obj: Any) -> Any:
    return _converter.unstructure(obj)


def structure(data: Any, cls: type[Any]) -> Any:
    return _converter.structure(data, cls)


# Hand-written encoders of the records written most (a join per member join, on the event loop): each
# returns exactly `_generic_payload`'s bytes, or None to leave the record to it (tests/service/
# test_join_payload.py compares them over generated records).
_PAYLOAD_ENCODERS: dict[type, Callable[[Any], bytes | None]] = {JoinRecorded: join_payload}


def _generic_payload(record: Record) -> bytes:
    payload = json.dumps(_converter.unstructure(record), ensure_ascii=False, separators=(",", ":"))
    return payload.encode("utf-8")


def encode(record: Record) -> tuple[int, bytes]:
    """A record's WAL type code and JSON payload (compact, UTF-8, keys in field order)."""
    cls = type(record)
    code = RECORD_TYPES[cls]
    fast = _PAYLOAD_ENCODERS.get(cls)
    payload = None if fast is None else fast(record)
    return code, _generic_payload(record) if payload is None else payload


def decode(type_code: int, payload: bytes) -> Record:
    """The record for a WAL frame's type code and payload. Raises KeyError for an unknown type code."""
    cls = TYPE_CLASSES[type_code]
    result: Record = _converter.structure(json.loads(payload), cls)
    return result
