"""The health endpoint over real sockets on 127.0.0.1, on both anyio backends."""

from __future__ import annotations

import http
import socket
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import attrs
import pytest

from service.health import (
    DISCORD,
    RECOVERY,
    HealthServer,
    HTTPError,
    Readiness,
    parse_request_head,
)
from service.metrics import ServiceMetrics


@attrs.frozen
class Served:
    server: HealthServer
    port: int
    readiness: Readiness
    metrics: ServiceMetrics


@asynccontextmanager
async def serving(**options: object) -> AsyncIterator[Served]:
    metrics = ServiceMetrics.create()
    readiness = Readiness(gauge=metrics.ready)
    server = HealthServer(readiness, metrics.registry, port=0, **options)  # type: ignore[arg-type]
    async with anyio.create_task_group() as tg:
        port = await tg.start(server.run)
        yield Served(server, port, readiness, metrics)
        tg.cancel_scope.cancel()


@attrs.frozen
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


async def exchange(port: int, raw: bytes) -> Response:
    """Send raw bytes, read until the server closes, parse the one response."""
    with anyio.fail_after(5):
        async with await anyio.connect_tcp("127.0.0.1", port) as stream:
            await stream.send(raw)
            data = bytearray()
            try:
                while True:
                    data += await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                pass
    head, _, body = bytes(data).partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    version, code, _reason = status_line.split(" ", 2)
    assert version == "HTTP/1.1"
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(": ")
        headers[name.lower()] = value
    return Response(int(code), headers, body)


def get(path: str, method: str = "GET") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: test\r\n\r\n".encode()


@pytest.mark.anyio
async def test_healthz_is_ready_only_after_recovery_and_discord_login() -> None:
    async with serving() as s:
        assert s.server.bound_port == s.port > 0
        r = await exchange(s.port, get("/healthz"))
        assert r.status == 503
        assert r.body == b"not ready: start-up recovery has not finished; not logged in to Discord\n"
        assert r.headers["connection"] == "close"
        assert int(r.headers["content-length"]) == len(r.body)

        s.readiness.mark_ready(RECOVERY)
        r = await exchange(s.port, get("/healthz"))
        assert (r.status, r.body) == (503, b"not ready: not logged in to Discord\n")
        assert s.metrics.ready.value() == 0

        s.readiness.mark_ready(DISCORD)
        r = await exchange(s.port, get("/healthz"))
        assert (r.status, r.body) == (200, b"ready\n")
        assert b"\ninvite_ledger_ready 1\n" in (await exchange(s.port, get("/metrics"))).body

        s.readiness.mark_not_ready(DISCORD, "gateway disconnected, reconnecting")
        r = await exchange(s.port, get("/healthz"))
        assert (r.status, r.body) == (503, b"not ready: gateway disconnected, reconnecting\n")
        assert b"\ninvite_ledger_ready 0\n" in (await exchange(s.port, get("/metrics"))).body


@pytest.mark.anyio
async def test_metrics_are_served_as_prometheus_text_and_callbacks_are_read_per_scrape() -> None:
    async with serving() as s:
        s.metrics.durable_lsn.set(42)
        backlog = [3]
        s.metrics.backup_backlog_segments.set_function(lambda: backlog[0], target="s3")
        r = await exchange(s.port, get("/metrics"))
        assert r.status == 200
        assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
        text = r.body.decode()
        assert "# TYPE invite_ledger_durable_lsn gauge\ninvite_ledger_durable_lsn 42\n" in text
        assert 'invite_ledger_backup_backlog_segments{target="s3"} 3\n' in text
        backlog[0] = 0
        text = (await exchange(s.port, get("/metrics?name[]=x"))).body.decode()
        assert 'invite_ledger_backup_backlog_segments{target="s3"} 0\n' in text


@pytest.mark.anyio
async def test_head_has_the_get_headers_and_no_body() -> None:
    async with serving() as s:
        full = await exchange(s.port, get("/metrics"))
        head = await exchange(s.port, get("/metrics", "HEAD"))
        assert head.status == 200
        assert head.body == b""
        assert head.headers["content-length"] == full.headers["content-length"]
        assert (await exchange(s.port, get("/healthz", "HEAD"))).status == 503


@pytest.mark.anyio
async def test_unknown_paths_and_methods() -> None:
    async with serving() as s:
        assert (await exchange(s.port, get("/"))).status == 404
        assert (await exchange(s.port, get("/healthz/../metrics"))).status == 404
        r = await exchange(s.port, get("/metrics", "POST"))
        assert r.status == 405
        assert r.headers["allow"] == "GET, HEAD"
        assert (await exchange(s.port, get("/healthz", "DELETE"))).status == 405


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400),  # a TLS ClientHello-ish blob
        (b"GET /healthz\r\n\r\n", 400),  # HTTP/0.9 style
        (b"GET  /healthz HTTP/1.1\r\n\r\n", 400),  # two spaces
        (b"GET healthz HTTP/1.1\r\n\r\n", 400),  # not origin-form
        (b"GET /healthz HTTP/1.1\r\nno colon here\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.1\r\nX-A: 1\r\n folded\r\n\r\n", 400),  # obsolete line folding
        (b"GET /healthz HTTP/1.1\r\nBad Name: 1\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", 400),
        (b"GET /healthz HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        (b"GET /healthz HTTP/2.0\r\n\r\n", 505),
        (b"GET /healthz HTTP/1.1\r\nHost: x", 400),  # the client half-closes before the head ends
    ],
)
async def test_garbage_gets_an_error_answer_not_a_crash(raw: bytes, status: int) -> None:
    async with serving() as s:
        if raw.endswith(b"Host: x"):
            with anyio.fail_after(5):
                async with await anyio.connect_tcp("127.0.0.1", s.port) as stream:
                    await stream.send(raw)
                    await stream.send_eof()
                    data = bytearray()
                    try:
                        while True:
                            data += await stream.receive()
                    except anyio.EndOfStream:
                        pass
            assert data.startswith(b"HTTP/1.1 400 ")
        else:
            r = await exchange(s.port, raw)
            assert r.status == status
            assert r.headers["connection"] == "close"
        # ...and the server still answers the next client
        assert (await exchange(s.port, get("/healthz"))).status == 503


@pytest.mark.anyio
async def test_bare_lf_requests_are_understood() -> None:
    async with serving() as s:
        s.readiness.mark_ready(RECOVERY)
        s.readiness.mark_ready(DISCORD)
        r = await exchange(s.port, b"GET /healthz HTTP/1.0\n\n")
        assert (r.status, r.body) == (200, b"ready\n")


@pytest.mark.anyio
async def test_oversized_head_is_refused() -> None:
    async with serving(max_header_bytes=1024) as s:
        raw = b"GET /healthz HTTP/1.1\r\n" + b"X-Pad: " + b"a" * 4000 + b"\r\n\r\n"
        r = await exchange(s.port, raw)
        assert r.status == 431
        # a head that arrives complete in one read but is over the cap is refused too
        raw = b"GET /healthz HTTP/1.1\r\n" + b"X-Pad: " + b"a" * 1100 + b"\r\n\r\n"
        assert (await exchange(s.port, raw)).status == 431


@pytest.mark.anyio
async def test_slow_client_times_out_with_408() -> None:
    async with serving(read_timeout=0.3) as s:
        started = time.monotonic()
        r = await exchange(s.port, b"GET /heal")
        elapsed = time.monotonic() - started
        assert r.status == 408
        assert 0.25 <= elapsed < 3


@pytest.mark.anyio
async def test_a_probe_that_connects_and_leaves_does_not_disturb_the_server() -> None:
    async with serving() as s:
        for _ in range(5):
            stream = await anyio.connect_tcp("127.0.0.1", s.port)
            await stream.aclose()
        assert (await exchange(s.port, get("/healthz"))).status == 503


@pytest.mark.anyio
async def test_connections_are_bounded() -> None:
    """With one slot, an idle connection holds it until its read timeout; the next client waits meanwhile
    instead of getting a task of its own."""
    async with serving(max_connections=1, read_timeout=0.5) as s:
        idle = await anyio.connect_tcp("127.0.0.1", s.port)
        try:
            await anyio.sleep(0.05)  # let the server accept the idle connection first
            started = time.monotonic()
            r = await exchange(s.port, get("/healthz"))
            assert r.status == 503
            assert time.monotonic() - started >= 0.35
        finally:
            await idle.aclose()


@pytest.mark.anyio
async def test_a_real_http_client_can_use_it() -> None:
    async with serving() as s:
        url = f"http://127.0.0.1:{s.port}"

        def fetch(path: str) -> tuple[int, str, str]:
            try:
                with urllib.request.urlopen(url + path, timeout=5) as response:
                    return response.status, response.headers["Content-Type"], response.read().decode()
            except urllib.error.HTTPError as exc:
                return exc.code, exc.headers["Content-Type"], exc.read().decode()

        status, _, body = await anyio.to_thread.run_sync(fetch, "/healthz")
        assert (status, body) == (
            503,
            "not ready: start-up recovery has not finished; not logged in to Discord\n",
        )
        s.readiness.mark_ready(RECOVERY)
        s.readiness.mark_ready(DISCORD)
        assert (await anyio.to_thread.run_sync(fetch, "/healthz"))[::2] == (200, "ready\n")
        status, content_type, body = await anyio.to_thread.run_sync(fetch, "/metrics")
        assert status == 200
        assert content_type.startswith("text/plain; version=0.0.4")
        assert 'invite_ledger_joins_total{kind="exact"} 0' in body


@pytest.mark.anyio
async def test_binding_a_port_in_use_fails_loudly() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = HealthServer(Readiness(), ServiceMetrics.create().registry, port=port)
        with pytest.raises(OSError), anyio.fail_after(5):
            await server.run()


@pytest.mark.anyio
async def test_the_server_stops_when_cancelled() -> None:
    async with serving() as s:
        port = s.port
    with pytest.raises(OSError):
        await anyio.connect_tcp("127.0.0.1", port)


def test_readiness_rejects_unknown_conditions() -> None:
    readiness = Readiness()
    with pytest.raises(KeyError):
        readiness.mark_ready("recovry")
    assert readiness.status() == (
        False,
        "not ready: start-up recovery has not finished; not logged in to Discord",
    )
    custom = Readiness({"only": "waiting"})
    custom.mark_ready("only")
    assert custom.status() == (True, "ready")


def test_parser_keeps_what_it_needs() -> None:
    request = parse_request_head(
        b"\r\nHEAD /metrics?x=1 HTTP/1.1\r\nHost: a\r\nX-Y:\t v \r\nContent-Length: 0"
    )
    assert request.method == "HEAD"
    assert request.path == "/metrics"
    assert request.headers == (("host", "a"), ("x-y", "v"), ("content-length", "0"))
    with pytest.raises(HTTPError) as info:
        parse_request_head(b"")
    assert info.value.status == http.HTTPStatus.BAD_REQUEST
