"""An optional HTTP endpoint on 127.0.0.1: `/healthz` (readiness) and `/metrics` (Prometheus text).

Built on anyio sockets with a minimal HTTP/1.1 parser rather than aiohttp's server, so it runs on asyncio
and trio alike and every byte it accepts is bounded: one request per connection (`Connection: close`), GET
and HEAD only, no request body, a capped header size, a read timeout and a capped number of connections.
The parser is a pure function (bytes in, request or error out), as the rest of the project's protocol code.

    readiness = Readiness(gauge=metrics.ready)
    server = HealthServer(readiness, metrics.registry, port=config.http.port)  # if config.http.enabled
    port = await task_group.start(server.run)     # returns once listening; port 0 picks a free one
    ...
    readiness.mark_ready(RECOVERY)                # after start-up recovery
    readiness.mark_ready(DISCORD)                 # on the Ready event
    readiness.mark_not_ready(DISCORD, "gateway disconnected, reconnecting")
"""

from __future__ import annotations

import email.utils
import http
import logging
import re
import threading
from collections.abc import Mapping

import anyio
import attrs
from anyio.abc import SocketAttribute, SocketListener, SocketStream, TaskGroup, TaskStatus

from service.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from service.metrics import Gauge, Registry

DEFAULT_PORT = 9464  # as config.HttpConfig.port and the Dockerfile HEALTHCHECK (INVITE_LEDGER_HTTP_PORT)

RECOVERY = "recovery"
DISCORD = "discord"
DEFAULT_CONDITIONS: Mapping[str, str] = {
    RECOVERY: "start-up recovery has not finished",
    DISCORD: "not logged in to Discord",
}

_log = logging.getLogger(__name__)
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")  # RFC 9110 token (methods, header names)
_TARGET = re.compile(r"/[\x21-\x7e]*\Z")  # origin-form: printable ASCII, no spaces
_HEAD_END = re.compile(rb"\r?\n\r?\n")
_ALLOWED_METHODS = ("GET", "HEAD")


@attrs.define(eq=False)
class Readiness:
    """The conditions that must all hold before `/healthz` answers 200, each with the reason it does not
    hold yet. Set by the service (recovery, the gateway adapter); read by the endpoint. Thread-safe, and
    mirrored into the `invite_ledger_ready` gauge when one is given."""

    conditions: Mapping[str, str] = attrs.field(factory=lambda: dict(DEFAULT_CONDITIONS))
    gauge: Gauge | None = None
    _pending: dict[str, str] = attrs.field(init=False)
    _lock: threading.Lock = attrs.field(init=False, factory=threading.Lock)

    def __attrs_post_init__(self) -> None:
        self._pending = dict(self.conditions)
        with self._lock:
            self._publish()

    def mark_ready(self, condition: str) -> None:
        self._check(condition)
        with self._lock:
            self._pending.pop(condition, None)
            self._publish()

    def mark_not_ready(self, condition: str, reason: str) -> None:
        self._check(condition)
        with self._lock:
            self._pending[condition] = reason
            self._publish()

    @property
    def ready(self) -> bool:
        with self._lock:
            return not self._pending

    def status(self) -> tuple[bool, str]:
        """(True, "ready") or (False, "not ready: <reason>; <reason>") in the order conditions were given."""
        with self._lock:
            reasons = [self._pending[c] for c in self.conditions if c in self._pending]
        if not reasons:
            return True, "ready"
        return False, "not ready: " + "; ".join(reasons)

    def _check(self, condition: str) -> None:
        # A typo must fail loudly, not leave the service forever "not ready" (or ready too early).
        if condition not in self.conditions:
            raise KeyError(f"unknown readiness condition {condition!r}; known: {list(self.conditions)}")

    def _publish(self) -> None:
        # Called with the lock held, so two threads changing conditions cannot publish out of order.
        if self.gauge is not None:
            self.gauge.set(0 if self._pending else 1)


@attrs.frozen
class Request:
    method: str
    target: str
    version: str
    headers: tuple[tuple[str, str], ...]

    @property
    def path(self) -> str:
        return self.target.partition("?")[0]


class HTTPError(Exception):
    def __init__(self, status: http.HTTPStatus, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def find_head_end(buffer: bytes | bytearray) -> tuple[int, int] | None:
    """Where the request head ends: (end of head, start of what follows), or None if not yet received.
    Bare LF line endings are accepted, as RFC 9112 allows a recipient to."""
    match = _HEAD_END.search(buffer)
    return None if match is None else (match.start(), match.end())


def parse_request_head(head: bytes) -> Request:
    """Parse a request line and header fields (without the empty line that ends them). Raises HTTPError."""
    text = head.decode("latin-1")
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    while lines and lines[0] == "":  # RFC 9112 2.2: ignore empty lines before the request line
        lines.pop(0)
    if not lines:
        raise HTTPError(http.HTTPStatus.BAD_REQUEST, "empty request")
    parts = lines[0].split(" ")
    if len(parts) != 3:
        raise HTTPError(http.HTTPStatus.BAD_REQUEST, "malformed request line")
    method, target, version = parts
    if not _TOKEN.match(method):
        raise HTTPError(http.HTTPStatus.BAD_REQUEST, "malformed method")
    if not re.fullmatch(r"HTTP/\d\.\d", version):
        raise HTTPError(http.HTTPStatus.BAD_REQUEST, "malformed HTTP version")
    if version not in ("HTTP/1.0", "HTTP/1.1"):
        raise HTTPError(http.HTTPStatus.HTTP_VERSION_NOT_SUPPORTED, f"{version} is not supported")
    if not _TARGET.match(target):
        raise HTTPError(http.HTTPStatus.BAD_REQUEST, "malformed request target")
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        # No obsolete line folding (a line starting with whitespace), no space before the colon.
        if not colon or not _TOKEN.match(name):
            raise HTTPError(http.HTTPStatus.BAD_REQUEST, "malformed header field")
        headers.append((name.lower(), value.strip(" \t")))
    for name, value in headers:
        # We never read a body; refusing one keeps the connection's bytes accounted for.
        if name == "transfer-encoding" or (name == "content-length" and value != "0"):
            raise HTTPError(http.HTTPStatus.BAD_REQUEST, "a request body is not accepted")
    return Request(method, target, version, tuple(headers))


def render_response(
    status: http.HTTPStatus,
    body: str,
    *,
    content_type: str = "text/plain; charset=utf-8",
    head_only: bool = False,
    extra_headers: Mapping[str, str] | None = None,
) -> bytes:
    payload = body.encode("utf-8")
    lines = [
        f"HTTP/1.1 {status.value} {status.phrase}",
        f"Date: {email.utils.formatdate(usegmt=True)}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(payload)}",
        "Cache-Control: no-store",
        "Connection: close",
    ]
    lines.extend(f"{name}: {value}" for name, value in (extra_headers or {}).items())
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head if head_only else head + payload


@attrs.define(eq=False)
class HealthServer:
    readiness: Readiness
    registry: Registry
    port: int = DEFAULT_PORT
    # Loopback by default: the metrics say how busy the bot is, which is nobody else's business. In a
    # container the HEALTHCHECK runs inside the container's network namespace, so loopback still works.
    host: str = "127.0.0.1"
    read_timeout: float = 5.0
    max_header_bytes: int = 8192
    max_connections: int = 16
    bound_port: int | None = attrs.field(init=False, default=None)

    async def run(self, *, task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED) -> None:
        """Listen and serve until cancelled. `task_status.started(port)` reports the bound port. A failure
        to bind (port in use) raises: a misconfigured port should stop start-up, not be silently ignored."""
        multi = await anyio.create_tcp_listener(local_host=self.host, local_port=self.port, backlog=64)
        async with multi, anyio.create_task_group() as tg:
            self.bound_port = multi.extra(SocketAttribute.local_port)
            _log.info(
                "health endpoint listening on http://%s:%d/healthz and /metrics", self.host, self.bound_port
            )
            # A semaphore, not a limiter: it is acquired by an accept loop and released by the handler.
            # When every slot is busy we stop accepting and the kernel's backlog holds the rest.
            slots = anyio.Semaphore(self.max_connections)
            # An IP literal gives one listener; a host name may give one per address family.
            for listener in multi.listeners:
                assert isinstance(listener, SocketListener)  # what create_tcp_listener makes; has accept()
                tg.start_soon(self._accept_loop, listener, slots, tg)
            task_status.started(self.bound_port)

    async def _accept_loop(self, listener: SocketListener, slots: anyio.Semaphore, tg: TaskGroup) -> None:
        while True:
            await slots.acquire()
            try:
                stream = await listener.accept()
            except OSError as exc:  # EMFILE and friends: wait and try again, never crash the service
                slots.release()
                _log.warning("health endpoint accept failed: %s", exc)
                await anyio.sleep(0.5)
                continue
            except BaseException:
                slots.release()
                raise
            tg.start_soon(self._serve_connection, stream, slots)

    async def _serve_connection(self, stream: SocketStream, slots: anyio.Semaphore) -> None:
        try:
            # Overall bound: reading (read_timeout), writing a small response and the lingering close.
            with anyio.move_on_after(self.read_timeout * 2 + 1):
                response = await self._read_and_answer(stream)
                if response is not None:
                    await stream.send(response)
                    await self._linger(stream)
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
            _log.debug("health endpoint connection dropped: %r", exc)
        except Exception:
            _log.exception("health endpoint connection failed")
        finally:
            slots.release()
            with anyio.CancelScope(shield=True):
                await stream.aclose()

    async def _read_and_answer(self, stream: SocketStream) -> bytes | None:
        buffer = bytearray()
        try:
            with anyio.fail_after(self.read_timeout):
                while (end := find_head_end(buffer)) is None:
                    if len(buffer) > self.max_header_bytes:
                        raise HTTPError(
                            http.HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "request head too large"
                        )
                    try:
                        buffer += await stream.receive(4096)
                    except anyio.EndOfStream:
                        if not buffer.strip():
                            return None  # a port probe that connected and left: nothing to answer
                        raise HTTPError(http.HTTPStatus.BAD_REQUEST, "incomplete request") from None
            if end[0] > self.max_header_bytes:
                raise HTTPError(http.HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "request head too large")
            request = parse_request_head(bytes(buffer[: end[0]]))
        except TimeoutError:
            return render_response(http.HTTPStatus.REQUEST_TIMEOUT, "request timeout\n")
        except HTTPError as exc:
            _log.debug("health endpoint refused a request: %s", exc.detail)
            return render_response(exc.status, f"{exc.status.phrase.lower()}: {exc.detail}\n")
        return self.answer(request)

    def answer(self, request: Request) -> bytes:
        head_only = request.method == "HEAD"
        if request.method not in _ALLOWED_METHODS:
            return render_response(
                http.HTTPStatus.METHOD_NOT_ALLOWED,
                "method not allowed\n",
                extra_headers={"Allow": ", ".join(_ALLOWED_METHODS)},
            )
        if request.path == "/healthz":
            ready, reason = self.readiness.status()
            status = http.HTTPStatus.OK if ready else http.HTTPStatus.SERVICE_UNAVAILABLE
            return render_response(status, reason + "\n", head_only=head_only)
        if request.path == "/metrics":
            return render_response(
                http.HTTPStatus.OK,
                self.registry.render(),
                content_type=METRICS_CONTENT_TYPE,
                head_only=head_only,
            )
        return render_response(http.HTTPStatus.NOT_FOUND, "not found\n", head_only=head_only)

    async def _linger(self, stream: SocketStream) -> None:
        """Half-close, then read and discard until the client closes (bounded in time and bytes). Closing
        with unread bytes in the receive buffer makes the kernel send RST, and the client may then lose
        the response it has not read yet; this matters for the error answers to garbage."""
        try:
            await stream.send_eof()
            discarded = 0
            with anyio.move_on_after(min(1.0, self.read_timeout)):
                while discarded < 65536:
                    discarded += len(await stream.receive(4096))
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass
