"""The options as a flat list of dotted keys, with their types, defaults and environment variables.

Walked from the attrs classes of `options.py`; both the loader (which variables override which key, what
type a value must have) and the generated documentation read the options through this one walk.
"""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Iterator
from typing import Any, Literal

import attrs

from service.config.options import Config, Secret

ENV_PREFIX = "INVITE_LEDGER_"


@attrs.frozen
class OptionInfo:
    key: str  # dotted, e.g. "wal.segment_bytes"
    type_name: str
    default: Any
    doc: str
    env: tuple[str, ...]
    fallback_env: tuple[str, ...]
    example: str | None
    field: attrs.Attribute[Any]
    annotation: Any


def iter_options(cls: type[Any] = Config, prefix: str = "") -> Iterator[OptionInfo]:
    """Every option, in file order, with its documentation (nested tables such as backup.s3 included)."""
    hints = typing.get_type_hints(cls)
    for field in attrs.fields(cls):
        if field.name == "source" and cls is Config:
            continue
        key = f"{prefix}{field.name}"
        annotation = hints[field.name]
        if attrs.has(annotation):
            yield from iter_options(annotation, key + ".")
            continue
        env = (ENV_PREFIX + key.replace(".", "_").upper(), *field.metadata.get("env", ()))
        yield OptionInfo(
            key=key,
            type_name=_type_name(annotation),
            default=field.default,
            doc=field.metadata["doc"],
            env=env,
            fallback_env=field.metadata.get("fallback_env", ()),
            example=field.metadata.get("example"),
            field=field,
            annotation=annotation,
        )


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0], True
    return tp, False


def _type_name(tp: Any) -> str:
    inner, optional = _unwrap_optional(tp)
    if typing.get_origin(inner) is Literal:
        name = "one of " + ", ".join(json.dumps(a) for a in typing.get_args(inner))
    elif typing.get_origin(inner) is tuple:
        name = "list of strings"
    else:
        name = {int: "integer", float: "number", bool: "boolean", str: "string", Secret: "secret string"}[
            inner
        ]
    return f"{name} (optional)" if optional else name
