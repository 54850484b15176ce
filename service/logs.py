"""Structured logging on the stdlib `logging` module: one event per line, logfmt (`key=value`) or JSON, with
secrets redacted before anything is written.

    setup_logging(format=config.logging.format, level=config.logging.level)
    register_secret(config.discord.token)            # a str or anything with .reveal(), None is ignored
    log_event(log, "join_recorded", guild=guild_id, lsn=lsn, kind=kind)
    # ts=2025-01-02T03:04:05.678Z level=info logger=service.attribution event=join_recorded guild=1 lsn=7 ...

Redaction happens twice. A filter on our handler rewrites each record (message, fields, traceback) before
any formatter sees it, which also protects handlers added later to the same record's path. The formatter
then redacts its finished line again, so a secret that only appears after formatting (say, inside a field's
repr) cannot slip through. Besides registered values, anything shaped like a Discord bot token and the value
of an `Authorization: Bot ...` header are always redacted, since interactions.py and aiohttp may log
request details at DEBUG level.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import sys
import threading
import time
import urllib.parse
from collections.abc import Mapping
from typing import Any, Literal, Protocol, TextIO

REDACTED = "***"
LIBRARY_LOGGERS = ("interactions",)  # interactions.py logs here; it must go through our handler too

_secrets: set[str] = set()
_secrets_lock = threading.Lock()
_secret_pattern: re.Pattern[str] | None = None

# A Discord bot token: base64url(user id) "." base64url(timestamp) "." base64url(HMAC). The first part is
# checked to decode to digits, which keeps JWTs and dotted identifiers out.
_TOKEN_SHAPE = re.compile(
    r"(?<![A-Za-z0-9_-])([A-Za-z0-9_-]{16,})\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{20,}(?![A-Za-z0-9_-])"
)
# `Authorization: Bot xyz`, `'Authorization': 'Bot xyz'`, `authorization=Bearer xyz`.
_AUTH_HEADER = re.compile(r"""(authorization['"]?\s*[:=]\s*['"]?)(bot|bearer)\s+[^\s'",;}]+""", re.IGNORECASE)
_KV_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_.:/-]")
_KV_NEEDS_QUOTES = re.compile(r'[\s"=\\]|^$')


class _Revealable(Protocol):
    def reveal(self) -> str: ...


def register_secret(value: str | _Revealable | None) -> None:
    """Never print `value` (nor its JSON-escaped or URL-encoded forms). Accepts config.Secret objects.
    Every non-empty value is honoured, even a short one: mangled log lines beat a leaked key."""
    if value is None:
        return
    text = value if isinstance(value, str) else value.reveal()
    if not text:
        return
    global _secret_pattern
    with _secrets_lock:
        _secrets.update(form for form in _escaped_forms(text) if form)
        # Longest first, so a secret that contains another is replaced whole.
        alternatives = sorted(_secrets, key=len, reverse=True)
        _secret_pattern = re.compile("|".join(re.escape(s) for s in alternatives))


def _escaped_forms(text: str) -> set[str]:
    """The ways a value shows up in a log line besides itself: inside JSON, in a repr() (a dict of
    headers, %r), percent-encoded in a URL."""
    return {
        text,
        json.dumps(text)[1:-1],
        json.dumps(text, ensure_ascii=False)[1:-1],
        repr(text)[1:-1],  # exactly what %r and a dict's repr show
        urllib.parse.quote(text, safe=""),
        urllib.parse.quote_plus(text),
    }


def clear_secrets() -> None:
    """For tests only: forget every registered secret."""
    global _secret_pattern
    with _secrets_lock:
        _secrets.clear()
        _secret_pattern = None


def _looks_like_bot_token(match: re.Match[str]) -> str:
    first = match.group(1)
    try:
        decoded = base64.urlsafe_b64decode(first + "=" * (-len(first) % 4))
    except (binascii.Error, ValueError):
        return match.group(0)
    return REDACTED if decoded.isdigit() else match.group(0)


def redact(text: str) -> str:
    pattern = _secret_pattern  # read once: register_secret may swap it from another thread
    if pattern is not None:
        text = pattern.sub(REDACTED, text)
    text = _AUTH_HEADER.sub(lambda m: f"{m.group(1)}{m.group(2)} {REDACTED}", text)
    return _TOKEN_SHAPE.sub(_looks_like_bot_token, text)


def _redact_value(value: Any) -> Any:
    if isinstance(value, bool | int | float) or value is None:
        return value
    return redact(value if isinstance(value, str) else str(value))


class RedactionFilter(logging.Filter):
    """Rewrites a record in place: the message is formatted with its arguments and redacted, fields and the
    traceback text are redacted. Always lets the record through."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_redacted", False):
            return True
        try:
            message = record.getMessage()
        except Exception:  # a bad %-format: keep the template and the arguments' reprs, redacted
            message = f"{record.msg!r} % {record.args!r}"
        record.msg, record.args = redact(message), None
        fields = getattr(record, "fields", None)
        if isinstance(fields, Mapping):
            record.fields = {key: _redact_value(value) for key, value in fields.items()}
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        record._redacted = True
        return True


def log_event(
    logger: logging.Logger, event: str, /, *, level: int = logging.INFO, exc_info: Any = None, **fields: Any
) -> None:
    """Log one event with fields: `log_event(log, "segment_shipped", target="s3", first_lsn=1)`."""
    if logger.isEnabledFor(level):
        logger.log(level, event, exc_info=exc_info, extra={"event": event, "fields": fields}, stacklevel=2)


class StructuredFormatter(logging.Formatter):
    """`ts level logger event|msg fields... exc` as one logfmt line or one JSON object per record."""

    def __init__(self, format: Literal["kv", "json"] = "kv") -> None:
        super().__init__()
        if format not in ("kv", "json"):
            raise ValueError(f'log format must be "kv" or "json", got {format!r}')
        self.style_name = format

    def format(self, record: logging.LogRecord) -> str:
        items = self._items(record)
        if self.style_name == "json":
            line = json.dumps(items, default=str, ensure_ascii=False)
        else:
            line = " ".join(f"{_kv_key(key)}={_kv_value(value)}" for key, value in items.items())
        return redact(line)

    def _items(self, record: logging.LogRecord) -> dict[str, Any]:
        seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        items: dict[str, Any] = {
            "ts": f"{seconds}.{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        event = getattr(record, "event", None)
        if isinstance(event, str):
            items["event"] = event
        else:
            items["msg"] = record.getMessage()
        fields = getattr(record, "fields", None)
        if isinstance(fields, Mapping):
            for key, value in fields.items():
                # A field may not overwrite ts/level/logger/event: it is kept under a suffixed name.
                items[f"{key}_" if key in items else str(key)] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            items["exc"] = record.exc_text
        if record.stack_info:
            items["stack"] = record.stack_info
        return items


def _kv_key(key: str) -> str:
    return _KV_KEY_UNSAFE.sub("_", key) or "_"


def _kv_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    text = str(value)
    if not _KV_NEEDS_QUOTES.search(text) and text.isprintable():
        return text
    # json.dumps quotes and escapes ", \, newlines and control characters: one event stays one line.
    return json.dumps(text, ensure_ascii=False)


class _OurHandler(logging.StreamHandler[TextIO]):
    """Marks the handler setup_logging installed, so calling it again replaces it instead of doubling."""


def setup_logging(
    format: Literal["kv", "json"] = "kv",
    level: str | int = "INFO",
    stream: TextIO | None = None,
) -> logging.Handler:
    """Send every logger's records (interactions.py's included) to `stream` (stderr by default) as
    structured, redacted lines. Idempotent: a second call replaces the first one's handler."""
    handler = _OurHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(StructuredFormatter(format))
    handler.addFilter(RedactionFilter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _OurHandler)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    for name in LIBRARY_LOGGERS:
        library = logging.getLogger(name)
        # Records reach our handler only by propagating to the root: make sure the library's do.
        library.propagate = True
        _guard(library.handlers)
    # A handler someone attached before us (a library's basic_logging option, logging.basicConfig) would
    # print records unredacted: give it the filter too.
    _guard(root.handlers)
    logging.captureWarnings(True)
    return handler


def _guard(handlers: list[logging.Handler]) -> None:
    for existing in handlers:
        if not any(isinstance(f, RedactionFilter) for f in existing.filters):
            existing.addFilter(RedactionFilter())
