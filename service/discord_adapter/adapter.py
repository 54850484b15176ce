"""The interactions.py 5.16 adapter: implements `service.gateway.GatewayPort` against Discord (or `sim/`).

    adapter = DiscordAdapter.from_config(config, on_ready=..., on_disconnect=...)
    commands.register(adapter, ledger)              # slash commands, installed on every client it builds
    gateway events: adapter.events                  # what the attribution actor consumes
    await task_group.start(adapter.run)             # returns once logged in and Ready (commands synced)

What it relies on is in DESIGN.md, "Facts about interactions.py 5.16"; the consequences here:

- Order. Every gateway dispatch and every listener is its own asyncio task. The order-sensitive events
  (member add/remove, invite create/delete, the audit log's invite deletions) are taken from the library's
  *raw* dispatch events, whose listener tasks are created while the gateway frame is handled, in frame
  order (the parsed events come one task later, after the library's processor, and could fall behind a raw
  one). Each listener hands its event to the stream before any await (`OrderedStream.put`), so the stream
  holds them in arrival order.
- Re-sync. Every Ready (start-up, and the fresh IDENTIFY after an INVALID_SESSION or a dropped session)
  announces every guild again as `GuildAvailable` with its member list, so joins missed in a gap are found
  and invites are fetched anew. A RESUME replays what was missed and needs nothing.
- Supervision. `astart()` returns after a failed reconnect and never retries; `run` starts a *new* client
  then, after a jittered, bounded backoff (a reused client would register the library's own listeners a
  second time and fire Ready twice). Stopping is cancelling `run` (`client.stop()` hangs in 5.16.0); the
  HTTP session is closed on every way out.
- Invite fetches. `http.get_guild_invites`, never `Guild.fetch_invites` (a TypeError after three 429s). The
  library keys its rate-limit buckets by Discord's bucket hash, which every guild shares for a route, and a
  bucket breaks under concurrent 429s; so all invite fetches of this process go one at a time, under a
  timeout. The library waits out a 429 and retries by itself (a delayed success), and after three returns
  None; the `Retry-After` it saw is noticed on the way in, so None or a timeout after a 429 becomes
  `RateLimited(retry_after)`, anything else `FetchError`.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import aiohttp
import anyio
import attrs
from anyio.abc import TaskGroup, TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream
from interactions import Client, Intents, Listener
from interactions.api.events import Disconnect, GuildJoin, RawGatewayEvent, Ready, Resume, WebsocketReady
from interactions.api.events import GuildAvailable as LibGuildAvailable
from interactions.api.http.route import Route
from interactions.client.errors import HTTPException, LibraryException, LoginError, WebSocketClosed

from service.config import Config, ConfigError
from service.discord_adapter import parse
from service.discord_adapter.stream import OrderedStream
from service.events import (
    Event,
    GatewayDisconnected,
    GuildAvailable,
    InviteCreated,
    InviteDeleted,
    MemberInfo,
    MemberJoined,
    MemberRemoved,
)
from service.gateway import FetchError, InviteList, RateLimited
from service.logs import log_event

log = logging.getLogger(__name__)

DEFAULT_API_BASE = "https://discord.com/api/v10"
INVITES_PATH = "/guilds/{guild_id}/invites"
MEMBERS_PAGE = 1000  # Discord's maximum for GET /guilds/{id}/members
#: Gateway close codes that no retry can fix: bad token, bad shard, sharding required, bad or
#: unapproved intents.
FATAL_CLOSE_CODES = frozenset({4004, 4010, 4011, 4012, 4013, 4014})

ClientSetup = Callable[[Client], None]


class GatewayFatalError(Exception):
    """Discord refused the bot for a reason a restart cannot fix (token, intents): fix the configuration."""


@attrs.frozen
class Backoff:
    """Delay before restarting the client: exponential, capped, with full jitter on the upper half (so
    several instances, or a crash loop, do not hit Discord in step)."""

    initial_s: float = 1.0
    max_s: float = 60.0
    factor: float = 2.0

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        ceiling = min(self.max_s, self.initial_s * self.factor ** min(attempt, 32))
        return (rng or random).uniform(ceiling / 2, ceiling)


def _utcnow() -> datetime:
    return datetime.now(UTC)


@attrs.define(eq=False)
class DiscordAdapter:
    token: str = attrs.field(repr=False)
    api_base_url: str = DEFAULT_API_BASE
    buffer: int = 10_000  # events held for the attribution actor before the ordered overflow is used
    fetch_timeout_s: float = 9.0
    member_list_max_pages: int = 100  # 100,000 members; a bigger guild is announced without a list
    backoff: Backoff = Backoff()
    stable_after_s: float = 60.0  # a client that ran this long starts the backoff again from the bottom
    on_ready: Callable[[], None] | None = None  # every Ready and Resume (health readiness)
    on_disconnect: Callable[[], None] | None = None  # the connection is gone (until the next Ready)
    client_options: Mapping[str, Any] = attrs.field(factory=dict)  # extra Client(...) arguments
    clock: Callable[[], datetime] = _utcnow
    restarts: int = 0
    _stream: OrderedStream[Event] = attrs.field(init=False)
    _setups: list[ClientSetup] = attrs.field(init=False, factory=list)
    _client: Client | None = attrs.field(init=False, default=None)
    _tg: TaskGroup | None = attrs.field(init=False, default=None)
    _first_ready: anyio.Event = attrs.field(init=False, factory=anyio.Event)
    _fetch_lock: anyio.Lock = attrs.field(init=False, factory=anyio.Lock)
    _members_lock: anyio.Lock = attrs.field(init=False, factory=anyio.Lock)
    _retry_after: dict[str, float] = attrs.field(init=False, factory=dict)  # guild -> last 429's wait
    _last_gateway_at: datetime | None = attrs.field(init=False, default=None)
    _sessions: int = attrs.field(init=False, default=0)  # READY payloads seen (one per session)
    _gap_open: bool = attrs.field(init=False, default=False)

    def __attrs_post_init__(self) -> None:
        self._stream = OrderedStream(self.buffer)

    @classmethod
    def from_config(cls, config: Config, **options: Any) -> DiscordAdapter:
        if config.discord.token is None:
            raise ConfigError("discord.token: no bot token (set DISCORD_TOKEN or discord.token_file)")
        return cls(
            token=config.discord.token.reveal(),
            api_base_url=config.discord.api_base_url,
            # A little under the actor's own timeout, so the actor hears why (RateLimited, FetchError).
            fetch_timeout_s=config.attribution.fetch_timeout_s * 0.9,
            **options,
        )

    # --- the port ------------------------------------------------------------------------------------

    @property
    def events(self) -> MemoryObjectReceiveStream[Event]:
        return self._stream.receive

    @property
    def client(self) -> Client | None:
        """The client running now (a new one after each restart); None before `run`."""
        return self._client

    @property
    def overflowed(self) -> int:
        return self._stream.overflowed

    def add_client_setup(self, setup: ClientSetup) -> None:
        """Call `setup(client)` on every client this adapter builds, before it starts (commands go here)."""
        self._setups.append(setup)

    async def fetch_invites(self, guild_id: str) -> InviteList:
        client = self._connected_client()
        async with self._fetch_lock:
            self._retry_after.pop(guild_id, None)
            try:
                with anyio.fail_after(self.fetch_timeout_s):
                    raw = await client.http.get_guild_invites(int(guild_id))
                    if raw is None:
                        raise self._limited_or(guild_id, "no answer (the library gave up after retries)")
                    vanity_code, vanity_uses = await self._vanity(client, guild_id)
            except TimeoutError:
                raise self._limited_or(guild_id, f"no answer within {self.fetch_timeout_s:g} s") from None
            except HTTPException as exc:
                if exc.status == 429:
                    raise RateLimited(self._retry_after.get(guild_id, 1.0)) from None
                raise FetchError(f"HTTP {exc.status}: {exc.text}") from None
            except (aiohttp.ClientError, OSError, RuntimeError) as exc:
                # RuntimeError: the library's bucket lock ("already locked") under concurrent 429s
                raise FetchError(f"{type(exc).__name__}: {exc}") from None
        try:
            invites = tuple(parse.invite_state(item) for item in raw)
        except (parse.PayloadError, TypeError, ValueError) as exc:
            raise FetchError(f"unreadable invite list: {exc}") from None
        return InviteList(invites, vanity_code=vanity_code, vanity_uses=vanity_uses)

    async def list_members(self, guild_id: str) -> tuple[MemberInfo, ...]:
        """Every member of the guild, a page of 1,000 at a time (FetchError past `member_list_max_pages`)."""
        client = self._connected_client()
        members: list[MemberInfo] = []
        after: str | None = None
        for _ in range(self.member_list_max_pages):
            page = await client.http.list_members(int(guild_id), limit=MEMBERS_PAGE, after=after)
            if page is None:
                raise FetchError("no answer to the member list")
            members.extend(parse.member_info(item) for item in page)
            if len(page) < MEMBERS_PAGE:
                return tuple(members)
            after = parse.user_id_of(page[-1])
        raise FetchError(f"more than {self.member_list_max_pages * MEMBERS_PAGE} members")

    async def send_message(self, channel_id: str, content: str) -> None:
        """Post a plain message that mentions nobody (the join-log channel)."""
        client = self._connected_client()
        payload = {"content": content, "allowed_mentions": {"parse": []}}
        await client.http.create_message(payload, int(channel_id))

    def _connected_client(self) -> Client:
        client = self._client
        if client is None or client.http.closed:
            raise FetchError("not connected to Discord")
        return client

    def _limited_or(self, guild_id: str, reason: str) -> Exception:
        retry_after = self._retry_after.get(guild_id)
        # The library has already waited once; the full wait is repeated on purpose: invalid requests
        # (429s) count towards Discord's ban threshold, so erring long is the cheap side.
        return FetchError(reason) if retry_after is None else RateLimited(retry_after)

    async def _vanity(self, client: Client, guild_id: str) -> tuple[str | None, int | None]:
        guild = client.get_guild(int(guild_id))
        cached_code = getattr(guild, "vanity_url_code", None) if guild is not None else None
        try:
            return parse.vanity(await client.http.get_guild_vanity_url(int(guild_id)))
        except HTTPException as exc:
            if exc.status not in (403, 404):  # 403/404: no vanity URL, or no Manage Guild to read it
                log_event(log, "vanity_fetch_failed", level=logging.WARNING, guild=guild_id, http=exc.status)
            return cached_code, None

    # --- running -------------------------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run clients until cancelled; started() once the first one is logged in and Ready."""
        previous_base = Route.BASE
        Route.BASE = self.api_base_url  # a class attribute of the library: put back on the way out
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                tg.start_soon(self._stream.pump)
                tg.start_soon(self._supervise)
                await self._first_ready.wait()
                task_status.started()
        finally:
            self._tg = None
            Route.BASE = previous_base
            self._stream.close()

    async def _supervise(self) -> None:
        attempt = 0
        while True:
            client = self._client = self._new_client()
            began = anyio.current_time()
            reason = "astart() returned"
            try:
                await client.astart()
            except (LoginError, WebSocketClosed, LibraryException) as exc:
                if _is_fatal(exc):
                    raise GatewayFatalError(f"Discord refused the bot: {exc}") from exc
                reason = f"{type(exc).__name__}: {exc}"
            except Exception as exc:  # an outage at login or connect: retried like a failed reconnect
                reason = f"{type(exc).__name__}: {exc}"
            finally:
                with anyio.CancelScope(shield=True):
                    await client.http.close()
            self._gap(reason)
            if anyio.current_time() - began >= self.stable_after_s:
                attempt = 0
            delay = self.backoff.delay(attempt)
            attempt += 1
            self.restarts += 1
            log_event(log, "discord_client_restart", level=logging.WARNING, reason=reason, delay_s=delay)
            await anyio.sleep(delay)

    def _new_client(self) -> Client:
        client = Client(
            # DEFAULT (every intent that is not privileged) holds GUILD_INVITES for INVITE_CREATE/DELETE and
            # GUILD_MODERATION for GUILD_AUDIT_LOG_ENTRY_CREATE; GUILD_MEMBERS is privileged.
            intents=Intents.DEFAULT | Intents.GUILD_MEMBERS,
            token=self.token,
            sync_interactions=True,
            delete_unused_application_cmds=True,
            fetch_members=False,  # no chunking before Ready: member lists come from REST on Ready
            send_command_tracebacks=False,  # never show a stack trace to a Discord user
            **self.client_options,
        )
        listeners: list[tuple[str, Callable[[Any], Any]]] = [
            ("raw_guild_member_add", self._on_member_add),
            ("raw_guild_member_remove", self._on_member_remove),
            ("raw_invite_create", self._on_invite_create),
            ("raw_invite_delete", self._on_invite_delete),
            ("raw_guild_audit_log_entry_create", self._on_audit_log_entry),
        ]
        listeners += [
            ("websocket_ready", self._on_session),  # READY itself (no raw_ready is dispatched for it)
            ("ready", self._on_ready),
            ("resume", self._on_resume),
            ("guild_join", self._on_guild),
            ("guild_available", self._on_guild),
            ("disconnect", self._on_disconnect),
        ]
        for name, handler in listeners:
            client.add_listener(Listener.create(name)(handler))
        _observe_invite_429s(client, self._retry_after)
        for setup in self._setups:
            setup(client)
        return client

    # --- listeners: put first, await later ----------------------------------------------------------

    def _now(self) -> datetime:
        now = self._last_gateway_at = self.clock()
        return now

    async def _on_member_add(self, event: RawGatewayEvent) -> None:
        data, at = event.data, self._now()
        guild_id = str(data.get("guild_id"))
        name = self._name(guild_id)
        self._put(lambda: MemberJoined(guild_id, at, member=parse.member_info(data), guild_name=name))

    async def _on_member_remove(self, event: RawGatewayEvent) -> None:
        data, at = event.data, self._now()
        self._put(lambda: MemberRemoved(str(data.get("guild_id")), at, user_id=parse.user_id_of(data)))

    async def _on_invite_create(self, event: RawGatewayEvent) -> None:
        data, at = event.data, self._now()
        self._put(lambda: InviteCreated(str(data.get("guild_id")), at, invite=parse.invite_state(data)))

    async def _on_invite_delete(self, event: RawGatewayEvent) -> None:
        data, at = event.data, self._now()
        self._put(lambda: InviteDeleted(str(data.get("guild_id")), at, code=str(data.get("code"))))

    async def _on_audit_log_entry(self, event: RawGatewayEvent) -> None:
        # The raw payload, not the library's GuildAuditLogEntryCreate: its `changes` keep every old_value
        # as Discord sent it, and the raw listener keeps the entry in order with the invite events.
        data, at = event.data, self._now()
        if data.get("action_type") == parse.AUDIT_INVITE_DELETE:
            self._put(lambda: parse.invite_final_uses(data, at))

    def _put(self, build: Callable[[], Event]) -> None:
        try:
            event = build()
        except (parse.PayloadError, TypeError, ValueError) as exc:
            log_event(log, "gateway_payload_unreadable", level=logging.ERROR, error=str(exc))
            return
        self._stream.put(event)

    async def _on_session(self, _event: WebsocketReady) -> None:
        # A READY after an earlier one is a new session: whatever happened in between was not replayed.
        self._sessions += 1
        if self._sessions > 1:
            self._gap("new gateway session")
        self._now()

    async def _on_ready(self, _event: Ready) -> None:
        client = self._client
        self._gap_open = False
        if client is not None:
            for guild in client.guilds:
                self._announce(str(guild.id))
        self._first_ready.set()
        if self.on_ready is not None:
            self.on_ready()

    async def _on_resume(self, _event: Resume) -> None:
        self._now()
        if self.on_ready is not None:
            self.on_ready()

    async def _on_guild(self, event: GuildJoin | LibGuildAvailable) -> None:
        self._now()
        client = self._client
        # Before Ready (start-up, a new session) the coming Ready announces every guild; after it, this is
        # a guild the bot was just added to, or one back from an outage.
        if client is not None and client.is_ready:
            self._announce(str(event.guild_id))

    async def _on_disconnect(self, _event: Disconnect) -> None:
        self._gap("gateway disconnected")

    def _gap(self, reason: str) -> None:
        """Once per gap: tell the attribution core events may be missing from the last message on."""
        if self._gap_open:
            return
        self._gap_open = True
        self._stream.put(GatewayDisconnected(self._last_gateway_at or self.clock()))
        log_event(log, "discord_disconnected", level=logging.WARNING, reason=reason)
        if self.on_disconnect is not None:
            self.on_disconnect()

    def _name(self, guild_id: str) -> str:
        guild = self._client.get_guild(int(guild_id)) if self._client is not None else None
        return str(guild.name) if guild is not None and guild.name else ""

    def _announce(self, guild_id: str) -> None:
        if self._tg is not None:  # in the adapter's task group, so cancelling `run` stops it too
            self._tg.start_soon(self._announce_guild, guild_id)

    async def _announce_guild(self, guild_id: str) -> None:
        members: tuple[MemberInfo, ...] | None
        try:
            # One guild at a time, for the same reason as invite fetches (the library's shared buckets).
            async with self._members_lock:
                members = await self.list_members(guild_id)
        except Exception as exc:  # any failure costs only the list, never the adapter
            # Without a list the core treats the gap as blind rather than guess who joined in it.
            log_event(log, "member_list_failed", level=logging.WARNING, guild=guild_id, error=repr(exc))
            members = None
        client = self._client
        guild = client.get_guild(int(guild_id)) if client is not None else None
        name = str(guild.name) if guild is not None and guild.name else self._name(guild_id)
        vanity_code = getattr(guild, "vanity_url_code", None) if guild is not None else None
        self._stream.put(
            GuildAvailable(guild_id, name, self.clock(), vanity_code=vanity_code or None, members=members)
        )


def _is_fatal(exc: BaseException) -> bool:
    if isinstance(exc, LoginError):
        return True
    if isinstance(exc, WebSocketClosed):
        return exc.code in FATAL_CLOSE_CODES
    # interactions.py raises a bare LibraryException for close codes 4011, 4013 and 4014.
    return type(exc) is LibraryException


def _observe_invite_429s(client: Client, retry_after: dict[str, float]) -> None:
    """Note the wait of every 429 on the invites route (the library retries without telling anyone).

    `ingest_ratelimit` sees the headers of every answer; this wraps it on this client only, records, and
    calls the original unchanged.
    """
    http = client.http
    original = http.ingest_ratelimit

    def ingest(route: Route, header: Any, bucket_lock: Any) -> None:
        if route.path == INVITES_PATH and header.get("Retry-After") is not None:
            wait = header.get("X-RateLimit-Reset-After") or header.get("Retry-After")
            try:
                retry_after[str(route.guild_id)] = max(float(wait), 0.0)
            except ValueError:
                retry_after[str(route.guild_id)] = 1.0
        original(route, header, bucket_lock)

    http.ingest_ratelimit = ingest  # type: ignore[method-assign]
