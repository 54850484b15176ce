"""`SimServer`: the simulator's HTTP server (REST + gateway on one port) and its scripting API.

Scripting methods that change the world (`join`, `leave`, `create_invite`, `invoke`, …) are plain methods:
they update the state and queue the resulting gateway events at once, so a test reads top to bottom.
Waiting is explicit and always bounded (`wait_ready`, `answer`, `wait_until`, … take a timeout and raise
TimeoutError naming what did not happen).

The simulator runs on asyncio (aiohttp), like interactions.py itself.
"""

# The scripting API takes `timeout=` arguments by design (the API; test scripts read better with a
# deadline argument than with a cancel scope around every wait).
# ruff: noqa: ASYNC109

from __future__ import annotations

import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

from aiohttp import web

from sim.discord_constants import API_VERSION
from sim.gateway import Gateway
from sim.interactions import Answer, InteractionDesk, SimInteraction
from sim.model import SimGuild, SimInvite, SimMember, SimMessage, SimRole, SimUser
from sim.ratelimit import GlobalBudget, RouteBudget
from sim.rest import RestApi
from sim.stats import ChangeNotifier, SimStats
from sim.world import Ref, SimWorld, ref_id

log = logging.getLogger("sim.server")

#: Discord's usual heartbeat interval. Tests that want to see heartbeats pass something short.
DISCORD_HEARTBEAT_INTERVAL_MS = 41_250
#: How long command-sync traffic must be quiet before `wait_ready` believes the client finished starting.
_SYNC_QUIET_S = 0.2


class SimServer:
    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
        bot_name: str = "InviteLedger",
        heartbeat_interval_ms: int = DISCORD_HEARTBEAT_INTERVAL_MS,
        privileged_intents_enabled: bool = True,
        interaction_ack_timeout_s: float | None = 3.0,
    ) -> None:
        self.host, self.port = host, port
        self.token = token or f"sim.{secrets.token_urlsafe(32)}"
        self.world = SimWorld(bot_name=bot_name)
        self.stats = SimStats()
        self.notifier = ChangeNotifier()
        self.desk = InteractionDesk(self.world, ack_timeout_s=interaction_ack_timeout_s)
        self.gateway = Gateway(
            self.world,
            self.stats,
            self.notifier,
            token=self.token,
            heartbeat_interval_ms=heartbeat_interval_ms,
            privileged_intents_enabled=privileged_intents_enabled,
        )
        self.rest = RestApi(self.world, self.desk, self.gateway, self.stats, self.notifier, token=self.token)
        self._runner: web.AppRunner | None = None

    # -- lifecycle ----------------------------------------------------------------------------------

    @classmethod
    @contextlib.asynccontextmanager
    async def running(
        cls, host: str = "127.0.0.1", port: int = 0, **options: Any
    ) -> AsyncIterator[SimServer]:
        """Serve for the duration of the block; `port=0` picks a free port (see `base_url`)."""
        sim = cls(host=host, port=port, **options)
        await sim.start()
        try:
            yield sim
        finally:
            await sim.stop()

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/gateway", self.gateway.handle)  # before the REST catch-all route
        self.rest.add_routes(app)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        self.gateway.ws_url = f"ws://{self.host}:{self.port}/gateway"
        self.world.attachment_base_url = f"http://{self.host}:{self.port}"
        log.info("Discord simulator on %s (gateway %s)", self.base_url, self.gateway.ws_url)

    async def stop(self) -> None:
        if self._runner is None:
            return
        self.gateway.hold_new_connections(False)
        await self.gateway.close_all()
        await self._runner.cleanup()
        self._runner = None

    @property
    def base_url(self) -> str:
        """The REST base to put in `interactions.api.http.route.Route.BASE`."""
        return f"http://{self.host}:{self.port}/api/v{API_VERSION}"

    @property
    def application_id(self) -> int:
        return self.world.application_id

    @property
    def bot_user(self) -> SimUser:
        return self.world.bot_user

    # -- world setup and scripted people ------------------------------------------------------------

    def add_user(
        self,
        name: str,
        *,
        bot: bool = False,
        created_at: datetime | None = None,
        global_name: str | None = None,
    ) -> SimUser:
        return self.world.add_user(name, bot=bot, created_at=created_at, global_name=global_name)

    def add_guild(self, name: str, **options: Any) -> SimGuild:
        """A guild the bot is in (owner, channels "general" and "join-log", optional `vanity_code`,
        `bot_permissions`, `everyone_permissions`); connected clients get GUILD_CREATE."""
        guild, events = self.world.add_guild(name, **options)
        self.gateway.dispatch(events)
        return guild

    def add_role(self, guild: Ref, name: str, permissions: int) -> SimRole:
        return self.world.add_role(guild, name, permissions)

    def add_member(
        self,
        guild: Ref,
        user: Ref,
        *,
        joined_at: datetime | None = None,
        roles: list[Ref] | None = None,
        permissions: int | None = None,
    ) -> SimMember:
        """Make someone a member silently (no event, no invite use): setting up the world."""
        role_ids = [ref_id(r) for r in roles or []]
        return self.world.add_member(
            guild, user, joined_at=joined_at, role_ids=role_ids, permissions=permissions
        )

    def join(self, guild: Ref, user: Ref, via: str | None = None) -> SimMember:
        """`user` joins through invite code `via`, the vanity URL (`via="vanity"`) or no invite (None):
        uses rise, GUILD_MEMBER_ADD is dispatched (DID_REJOIN flag if they were a member before), and an
        invite that reaches its max uses is deleted with INVITE_DELETE."""
        member, events = self.world.join(guild, user, via)
        self.gateway.dispatch(events)
        return member

    def leave(self, guild: Ref, user: Ref) -> SimMember:
        member, events = self.world.leave(guild, user)
        self.gateway.dispatch(events)
        return member

    def resend_member_add(self, guild: Ref, user: Ref) -> None:
        """Send GUILD_MEMBER_ADD again for an existing member (Discord does this; bots must deduplicate)."""
        self.gateway.dispatch([self.world.member_add_event(self.world.member(guild, user))])

    def create_invite(
        self,
        guild: Ref,
        inviter: Ref | None,
        *,
        code: str | None = None,
        max_uses: int = 0,
        max_age: int = 0,
        channel: Ref | None = None,
        temporary: bool = False,
    ) -> SimInvite:
        """A staff member creates an invite (INVITE_CREATE is dispatched)."""
        invite, events = self.world.create_invite(
            guild,
            inviter,
            code=code,
            max_uses=max_uses,
            max_age=max_age,
            channel_ref=channel,
            temporary=temporary,
        )
        self.gateway.dispatch(events)
        return invite

    def delete_invite(self, code: str, by: Ref | None = None) -> SimInvite:
        """A staff member (`by`) revokes an invite: INVITE_DELETE and GUILD_AUDIT_LOG_ENTRY_CREATE (action
        type 42, with the invite's final uses) are dispatched, each to bots with the permission it needs."""
        invite, events = self.world.delete_invite(code, by)
        self.gateway.dispatch(events)
        return invite

    def set_vanity(self, guild: Ref, code: str | None, uses: int = 0) -> None:
        self.world.set_vanity(guild, code, uses)

    def invites(self, guild: Ref) -> list[SimInvite]:
        return self.world.live_invites(guild)

    def advance_time(self, seconds: float) -> None:
        """Move the simulated clock forward (invite expiry, joined_at, new ids) without sleeping."""
        self.world.advance_time(seconds)

    # -- interactions -------------------------------------------------------------------------------

    def invoke(
        self,
        guild: Ref,
        user: Ref,
        command: str,
        options: dict[str, Any] | None = None,
        *,
        permissions: int | None = None,
        channel: Ref | None = None,
        locale: str = "en-US",
    ) -> SimInteraction:
        """`user` runs `/command` in `guild` (INTERACTION_CREATE type 2). Options are typed from the command
        the bot registered; USER options take a user (or id) and come with `resolved` users and members.
        `permissions` overrides the member's computed permissions (owner: all; else @everyone + roles)."""
        interaction, events = self.desk.invoke(
            guild, user, command, options, permissions=permissions, channel_ref=channel, locale=locale
        )
        self.gateway.dispatch(events)
        return interaction

    def click(
        self, message: SimMessage | Answer, custom_id: str, user: Ref, *, values: list[str] | None = None
    ) -> SimInteraction:
        """`user` presses the button `custom_id` on one of the bot's messages (INTERACTION_CREATE type 3)."""
        target = message.message if isinstance(message, Answer) else message
        if target is None:
            raise ValueError("that answer produced no message to click on")
        interaction, events = self.desk.click(target, custom_id, user, values=values)
        self.gateway.dispatch(events)
        return interaction

    def answers(self, interaction: SimInteraction) -> list[Answer]:
        """Everything the bot has sent for `interaction` so far, in order (callbacks, follow-ups, edits)."""
        return list(interaction.answers)

    async def answer(self, interaction: SimInteraction, timeout: float = 5.0) -> Answer:
        """The bot's first answer with content: a type 4/7 callback, or the edit or follow-up that completes
        a deferral (the deferral alone is not an answer; see `answers()` for everything)."""

        def first() -> Answer | None:
            return next((a for a in interaction.answers if a.kind != "callback" or not a.is_deferral), None)

        name = interaction.command_name or interaction.custom_id
        what = f"the bot's answer to interaction {interaction.id} ({name})"
        try:
            await self.wait_until(lambda: first() is not None, timeout, what)
        except TimeoutError as exc:
            if not interaction.answers:
                # interactions.py drops interactions that arrive before its start-up finished
                raise TimeoutError(
                    f"{exc}: nothing at all came back (invoked before wait_ready()?)"
                ) from None
            raise TimeoutError(f"{exc}: only {[a.kind for a in interaction.answers]} came back") from None
        found = first()
        assert found is not None
        return found

    async def wait_answers(
        self, interaction: SimInteraction, count: int, timeout: float = 5.0
    ) -> list[Answer]:
        await self.wait_until(
            lambda: len(interaction.answers) >= count,
            timeout,
            f"{count} answers to interaction {interaction.id}",
        )
        return list(interaction.answers)

    @property
    def registered_commands(self) -> dict[int | None, list[dict[str, Any]]]:
        """The bot's application commands by scope (a guild id, or None for global), as it registered them."""
        return {scope: list(commands) for scope, commands in self.world.commands.by_scope.items()}

    # -- channel messages ---------------------------------------------------------------------------

    def channel_messages(self, channel: Ref) -> list[SimMessage]:
        return self.world.channel_messages(channel)

    async def wait_channel_message(
        self,
        channel: Ref,
        predicate: Callable[[SimMessage], bool] = lambda m: True,
        timeout: float = 5.0,
    ) -> SimMessage:
        """The first message in `channel` (e.g. the join log) matching `predicate`."""

        def found() -> SimMessage | None:
            return next((m for m in self.world.channel_messages(channel) if predicate(m)), None)

        await self.wait_until(lambda: found() is not None, timeout, f"a message in channel {ref_id(channel)}")
        message = found()
        assert message is not None
        return message

    # -- gateway controls ---------------------------------------------------------------------------

    async def drop_connection(self, *, resume: bool = True, code: int | None = None) -> int:
        """Close the bot's gateway connection: code 4000 (resume=True) makes the client RESUME and get the
        events it missed replayed; resume=False closes with 4007 and ends the session (fresh IDENTIFY)."""
        return await self.gateway.drop(resume=resume, code=code)

    @contextlib.asynccontextmanager
    async def disconnected(self, *, resume: bool = True) -> AsyncIterator[SimServer]:
        """Drop the connection and keep the client from reconnecting until the block ends, so whatever the
        block scripts happens while the bot is away (and is replayed by its RESUME afterwards)."""
        self.gateway.hold_new_connections(True)
        try:
            await self.drop_connection(resume=resume)
            yield self
        finally:
            self.gateway.hold_new_connections(False)

    async def invalidate_session(self) -> int:
        """Send INVALID_SESSION (d=false): the client identifies again and gets a fresh READY."""
        return await self.gateway.invalidate_sessions()

    async def request_reconnect(self) -> int:
        """Send RECONNECT (op 7): the client reconnects and resumes."""
        return await self.gateway.request_reconnect()

    def set_heartbeat_acks(self, enabled: bool) -> None:
        """Stop acknowledging heartbeats: the client then treats the connection as a zombie and reconnects."""
        self.gateway.ack_heartbeats = enabled

    def set_outage(self, *, rest: bool = False, gateway: bool = False) -> None:
        """Simulate Discord being down: REST answers 502, new gateway connections are refused (503)."""
        self.rest.outage = rest
        self.gateway.refuse_connections = gateway

    def set_invites_budget(self, requests: int | None, window_s: float = 1.0) -> None:
        """Allow `requests` GET /guilds/{id}/invites per guild per `window_s`; beyond that answer 429 with
        `retry_after`. None removes the limit."""
        if requests is None:
            self.rest.invites_budget = None
        else:
            self.rest.invites_budget = RouteBudget(
                limit=requests, window_s=window_s, bucket="sim-guild-invites"
            )

    def set_global_budget(self, requests: int | None, window_s: float = 1.0) -> None:
        """Discord's global limit: `requests` per `window_s` over every authorised REST route but the
        interaction endpoints, beyond that a global 429. On by default at Discord's 50 per second; None
        turns it off."""
        self.rest.global_budget = None if requests is None else GlobalBudget(requests, window_s)

    # -- waiting ------------------------------------------------------------------------------------

    async def wait_until(
        self, predicate: Callable[[], bool], timeout: float = 5.0, what: str = "a condition"
    ) -> None:
        await self.notifier.wait_until(predicate, timeout, what, poll_s=0.05)

    def is_identified(self) -> bool:
        """A client has a live session and has been sent READY and every GUILD_CREATE."""
        return any(
            s.connection is not None and s.connection.cursor >= s.ready_seq
            for s in self.gateway.live_sessions()
        )

    async def wait_ready(self, timeout: float = 10.0, *, commands: bool = True) -> None:
        """Wait until a client identified and got its guilds, and (commands=True) synced its application
        commands after logging in. The library drops interactions that arrive before that, so invoke after."""
        await self.wait_until(self.is_identified, timeout, "a client to identify and receive its guilds")
        if not commands:
            return

        def synced() -> bool:
            login, sync = self.stats.last_login_at, self.stats.last_command_sync_at
            return (
                login is not None
                and sync is not None
                and sync >= login
                and time.monotonic() - sync >= _SYNC_QUIET_S
            )

        await self.wait_until(synced, timeout, "the client to sync its application commands")

    async def wait_resumed(self, count: int = 1, timeout: float = 5.0) -> None:
        await self.wait_until(lambda: len(self.stats.resumes) >= count, timeout, f"{count} RESUME(s)")

    async def wait_identifies(self, count: int, timeout: float = 5.0) -> None:
        await self.wait_until(lambda: self.stats.identifies >= count, timeout, f"{count} IDENTIFY(s)")
