"""Structured log lines and the guarantee that secrets are never printed."""

from __future__ import annotations

import base64
import io
import json
import logging
import re
from collections.abc import Iterator

import pytest

from service.config import Secret
from service.logs import (
    RedactionFilter,
    clear_secrets,
    log_event,
    redact,
    register_secret,
    setup_logging,
)

TOKEN = (
    base64.urlsafe_b64encode(b"1234567890123456789").decode().rstrip("=")
    + ".GhIjKl."
    + "aB3dE_fGh-IjKlMnOpQrStUvWxYz012"
)
_PAIR = re.compile(r'([^\s=]+)=("(?:[^"\\]|\\.)*"|\S*)')


def parse_kv(line: str) -> dict[str, str]:
    """A logfmt line back into its fields; fails if anything in the line is not a key=value pair."""
    pairs = _PAIR.findall(line)
    assert " ".join(f"{k}={v}" for k, v in pairs) == line, line
    return {key: json.loads(value) if value.startswith('"') else value for key, value in pairs}


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    library = logging.getLogger("interactions")
    saved = (list(root.handlers), root.level, list(library.handlers), library.propagate, library.level)
    saved_filters = {id(h): list(h.filters) for h in saved[0] + saved[2]}
    yield
    for handler in root.handlers:
        if handler not in saved[0]:
            handler.close()
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    library.handlers[:] = saved[2]
    library.propagate = saved[3]
    library.setLevel(saved[4])
    for handler in saved[0] + saved[2]:
        handler.filters[:] = saved_filters[id(handler)]
    logging.captureWarnings(False)
    clear_secrets()


def lines(stream: io.StringIO) -> list[str]:
    text = stream.getvalue()
    assert text.endswith("\n") or not text
    return text.splitlines()


def test_kv_lines_carry_the_event_and_its_fields() -> None:
    out = io.StringIO()
    setup_logging(format="kv", level="INFO", stream=out)
    log = logging.getLogger("service.test")
    log_event(log, "join_recorded", guild=123, lsn=7, kind="exact", note="two words", empty="", gone=None)
    log.info("plain %s message", "old-style")
    [first, second] = lines(out)
    fields = parse_kv(first)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", fields["ts"])
    assert {k: v for k, v in fields.items() if k != "ts"} == {
        "level": "info",
        "logger": "service.test",
        "event": "join_recorded",
        "guild": "123",
        "lsn": "7",
        "kind": "exact",
        "note": "two words",
        "empty": "",
        "gone": "null",
    }
    assert first.split(" ", 1)[1].startswith("level=info logger=service.test event=join_recorded guild=123")
    assert parse_kv(second)["msg"] == "plain old-style message"


def test_json_lines_keep_types() -> None:
    out = io.StringIO()
    setup_logging(format="json", level="DEBUG", stream=out)
    log_event(logging.getLogger("x"), "segment_shipped", level=logging.DEBUG, target="s3", lsn=9, ok=True)
    [line] = lines(out)
    record = json.loads(line)
    assert record["event"] == "segment_shipped"
    assert record["level"] == "debug"
    assert (record["target"], record["lsn"], record["ok"]) == ("s3", 9, True)


def test_quotes_newlines_and_tracebacks_stay_on_one_line() -> None:
    for fmt in ("kv", "json"):
        out = io.StringIO()
        setup_logging(format=fmt, stream=out)
        log = logging.getLogger("x")
        try:
            raise ValueError('bad "value"\nsecond line')
        except ValueError:
            log_event(log, "failed", level=logging.ERROR, exc_info=True, detail='a "b" = c\\d\n')
            log.exception("plain\nmessage")
        [first, second] = lines(out)
        decoded = parse_kv(first) if fmt == "kv" else json.loads(first)
        assert decoded["detail"] == 'a "b" = c\\d\n'
        assert decoded["exc"].startswith("Traceback")
        assert 'ValueError: bad "value"\nsecond line' in decoded["exc"]
        decoded = parse_kv(second) if fmt == "kv" else json.loads(second)
        assert decoded["msg"] == "plain\nmessage"


def test_fields_cannot_overwrite_the_line_header() -> None:
    out = io.StringIO()
    setup_logging(format="json", stream=out)
    log_event(logging.getLogger("x"), "e", logger="mine", ts="then")
    record = json.loads(lines(out)[0])
    assert record["logger"] == "x"
    assert (record["logger_"], record["ts_"]) == ("mine", "then")


def test_level_and_idempotent_setup() -> None:
    out = io.StringIO()
    setup_logging(stream=out)
    setup_logging(level="warning", stream=out)  # replaces, does not add a second handler
    log = logging.getLogger("x")
    log.info("dropped")
    log.warning("kept")
    assert [parse_kv(line)["msg"] for line in lines(out)] == ["kept"]
    with pytest.raises(ValueError):
        setup_logging(format="xml", stream=out)  # type: ignore[arg-type]


@pytest.mark.parametrize("fmt", ["kv", "json"])
def test_registered_secrets_never_reach_the_output(fmt: str) -> None:
    out = io.StringIO()
    setup_logging(format=fmt, stream=out)
    s3_key = 'wJalrXUtnFEMI/K7MDENG+bPxRfi "quoted" \\ it\'s é key'
    register_secret(Secret("opaque-discord-token-value"))
    register_secret(s3_key)
    register_secret(None)
    register_secret("")
    log = logging.getLogger("service.backup")
    log.info("using %s and %r", "opaque-discord-token-value", s3_key)
    log_event(log, "configured", secret=s3_key, nested={"k": s3_key}, url="https://x/?k=" + s3_key)
    try:
        raise RuntimeError(f"upload failed with key {s3_key}")
    except RuntimeError:
        log.exception("boom")
    text = out.getvalue()
    assert "opaque-discord-token-value" not in text
    for form in (s3_key, json.dumps(s3_key)[1:-1], "wJalrXUtnFEMI"):
        assert form not in text
    assert text.count("***") >= 5
    assert len(lines(out)) == 3


def test_bot_tokens_and_authorization_headers_are_redacted_without_registration() -> None:
    assert redact(f"token={TOKEN} end") == "token=*** end"
    assert redact(f"Authorization: Bot {TOKEN}") == "Authorization: Bot ***"
    headers = "{'Authorization': 'Bot not.a-real.token', 'X': 1}"
    assert redact(headers) == "{'Authorization': 'Bot ***', 'X': 1}"
    assert redact("authorization=Bearer abc123;") == "authorization=Bearer ***;"
    # dotted names and JWT-like strings whose first part is not a user id stay readable
    dotted = "invite_ledger_backup_backlog.segments.abcdefghijklmnopqrstuvwxyz"
    assert redact(dotted) == dotted
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.dBjftJeZ4CVPmB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert redact(jwt) == jwt


def test_interactions_logger_goes_through_the_redacting_handler() -> None:
    from interactions.client.const import get_logger

    out = io.StringIO()
    library = get_logger()
    assert library.name == "interactions"
    # as if the library's basic_logging option, or someone else, had attached a handler first
    own = io.StringIO()
    library.addHandler(logging.StreamHandler(own))
    library.propagate = False
    setup_logging(format="kv", stream=out)
    library.warning("sending IDENTIFY with token %s and headers %s", TOKEN, {"Authorization": f"Bot {TOKEN}"})
    [line] = lines(out)
    fields = parse_kv(line)
    assert fields["logger"] == "interactions"
    assert TOKEN not in out.getvalue()
    assert fields["msg"] == "sending IDENTIFY with token *** and headers {'Authorization': 'Bot ***'}"
    assert TOKEN not in own.getvalue()
    assert "***" in own.getvalue()


def test_the_filter_works_on_any_handler() -> None:
    register_secret("hunter2-secret")
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "pw=%s", ("hunter2-secret",), None)
    assert RedactionFilter().filter(record)
    assert record.getMessage() == "pw=***"
