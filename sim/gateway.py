"""The gateway websocket: HELLO, IDENTIFY → READY + GUILD_CREATE, heartbeats and acks, dispatches, RESUME
with replay of missed events, INVALID_SESSION, RECONNECT, and closes with chosen codes.

Every dispatch goes into its session's numbered log first; a per-connection writer task sends the log from
the connection's cursor on. Live sending and replay after RESUME are therefore the same code path: a
resumed connection simply starts its cursor at the `seq` the client last saw. Frames are JSON text (no
zlib), which interactions.py 5.16 accepts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from typing import Any

import attrs
from aiohttp import WSMsgType, web

from sim import payloads
from sim.discord_constants import API_VERSION, Close, Intent, Op
from sim.model import GatewayEvent
from sim.stats import ChangeNotifier, ResumeRecord, SimStats
from sim.world import SimWorld

log = logging.getLogger("sim.gateway")


@attrs.define(eq=False)
class GatewaySession:
    """A session's numbered dispatch log. Bounded: the oldest half is dropped past `max_events`, after which
    a RESUME from before the kept range gets INVALID_SESSION (as Discord does for stale sessions)."""

    id: str
    intents: int
    shard: tuple[int, int]
    max_events: int
    seq: int = 0
    #: The seq of the last GUILD_CREATE sent after READY: once a connection's cursor passes it, the client
    #: has everything it needs to finish starting up.
    ready_seq: int = 0
    valid: bool = True
    connection: GatewayConnection | None = None
    detached_at: float | None = None
    _frames: list[str] = attrs.field(factory=list)
    _first_seq: int = 1
    new_frame: asyncio.Event = attrs.field(factory=asyncio.Event)

    def append(self, name: str, data: dict[str, Any]) -> int:
        self.seq += 1
        self._frames.append(json.dumps({"op": Op.DISPATCH, "t": name, "s": self.seq, "d": data}))
        if len(self._frames) > self.max_events:
            dropped = len(self._frames) // 2
            del self._frames[:dropped]
            self._first_seq += dropped
        self.new_frame.set()
        return self.seq

    def can_resume_from(self, seq: int) -> bool:
        return self.valid and self._first_seq - 1 <= seq <= self.seq

    def frames_after(self, seq: int) -> list[tuple[int, str]]:
        start = max(seq + 1, self._first_seq)
        return [(s, self._frames[s - self._first_seq]) for s in range(start, self.seq + 1)]

    def wants(self, event: GatewayEvent, shard_of_guild: int | None) -> bool:
        if event.intent and not self.intents & event.intent:
            return False
        return shard_of_guild is None or shard_of_guild == self.shard[0]


@attrs.define(eq=False)
class GatewayConnection:
    ws: web.WebSocketResponse
    session: GatewaySession | None = None
    cursor: int = 0
    writer: asyncio.Task[None] | None = None
    send_lock: asyncio.Lock = attrs.field(factory=asyncio.Lock)
    heartbeats: int = 0
    closed_by_server: bool = False

    async def send_json(self, frame: dict[str, Any]) -> None:
        async with self.send_lock:
            if not self.ws.closed:
                await self.ws.send_str(json.dumps(frame))


class Gateway:
    def __init__(
        self,
        world: SimWorld,
        stats: SimStats,
        notifier: ChangeNotifier,
        *,
        token: str,
        heartbeat_interval_ms: int,
        privileged_intents_enabled: bool = True,
        max_events_per_session: int = 100_000,
        session_timeout_s: float = 120.0,
    ) -> None:
        self.world, self.stats, self.notifier = world, stats, notifier
        self.token = token
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.privileged_intents_enabled = privileged_intents_enabled
        self.max_events_per_session = max_events_per_session
        self.session_timeout_s = session_timeout_s
        self.ws_url = "ws://127.0.0.1/gateway"  # set by the server once bound
        self.sessions: dict[str, GatewaySession] = {}
        self.connections: set[GatewayConnection] = set()
        #: False: heartbeats go unanswered, so the client declares the connection a zombie and reconnects.
        self.ack_heartbeats = True
        #: True: new websocket handshakes are refused with 503 (a gateway outage).
        self.refuse_connections = False
        self._accepting = asyncio.Event()
        self._accepting.set()

    # -- scripting controls -------------------------------------------------------------------------

    def hold_new_connections(self, hold: bool) -> None:
        """While held, new connections are accepted but get no HELLO (the client waits)."""
        if hold:
            self._accepting.clear()
        else:
            self._accepting.set()

    def live_sessions(self) -> list[GatewaySession]:
        return [s for s in self.sessions.values() if s.valid and s.connection is not None]

    async def drop(self, *, resume: bool, code: int | None = None) -> int:
        """Close every connection: 4000 lets the client RESUME; otherwise 4007 and the session is gone."""
        code = code or (Close.UNKNOWN_ERROR if resume else Close.INVALID_SEQ)
        dropped = 0
        for conn in list(self.connections):
            if conn.session is not None and not resume:
                conn.session.valid = False
            await self._close(conn, code)
            dropped += 1
        return dropped

    async def invalidate_sessions(self) -> int:
        """Send INVALID_SESSION (d=false) on every connection: the client identifies again."""
        count = 0
        for conn in list(self.connections):
            if conn.session is not None:
                conn.session.valid = False
            await conn.send_json({"op": Op.INVALID_SESSION, "d": False})
            self.stats.invalid_sessions_sent += 1
            count += 1
        self.notifier.notify()
        return count

    async def request_reconnect(self) -> int:
        """Send RECONNECT (op 7): the client reconnects and resumes."""
        for conn in list(self.connections):
            await conn.send_json({"op": Op.RECONNECT, "d": None})
            self.stats.reconnects_requested += 1
        return len(self.connections)

    async def close_all(self) -> None:
        for conn in list(self.connections):
            await self._close(conn, 1001)

    async def _close(self, conn: GatewayConnection, code: int) -> None:
        conn.closed_by_server = True
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5):
                await conn.ws.close(code=code, message=b"closed by the simulator")

    # -- dispatch -----------------------------------------------------------------------------------

    def dispatch(self, events: list[GatewayEvent]) -> None:
        """Queue events on every valid session that may see them (intents, shard, the bot's permissions)."""
        self._forget_stale_sessions()
        for event in events:
            guild = self.world.guilds.get(event.guild_id) if event.guild_id is not None else None
            if event.permission and guild is not None and not self.world.bot_can(guild, event.permission):
                continue
            for session in self.sessions.values():
                shard = (event.guild_id >> 22) % session.shard[1] if event.guild_id is not None else None
                if session.valid and session.wants(event, shard):
                    session.append(event.name, event.data)
                    self.stats.dispatches += 1
        self.notifier.notify()

    def _forget_stale_sessions(self) -> None:
        now = time.monotonic()
        for session_id, session in list(self.sessions.items()):
            stale = session.detached_at is not None and now - session.detached_at > self.session_timeout_s
            if (not session.valid and session.connection is None) or stale:
                del self.sessions[session_id]

    # -- the websocket handler ----------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if self.refuse_connections:
            return web.Response(status=503, text="gateway unavailable (simulated outage)")
        ws = web.WebSocketResponse(timeout=5.0, max_msg_size=4 * 1024 * 1024)
        await ws.prepare(request)
        conn = GatewayConnection(ws)
        self.connections.add(conn)
        self.stats.connections_opened += 1
        self.notifier.notify()
        try:
            await self._accepting.wait()
            await conn.send_json({"op": Op.HELLO, "d": {"heartbeat_interval": self.heartbeat_interval_ms}})
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    if msg.type == WSMsgType.BINARY:
                        await self._close(conn, Close.DECODE_ERROR)
                    continue
                try:
                    frame = json.loads(msg.data)
                    op = frame["op"]
                except (ValueError, KeyError, TypeError):
                    await self._close(conn, Close.DECODE_ERROR)
                    break
                await self._on_frame(conn, op, frame.get("d"))
        finally:
            self.connections.discard(conn)
            if conn.session is not None and not conn.closed_by_server and ws.close_code in (1000, 1001):
                # As on Discord: a client closing with 1000 or 1001 ends its session (no RESUME after).
                conn.session.valid = False
            self._detach(conn)
            self.notifier.notify()
        return ws

    async def _on_frame(self, conn: GatewayConnection, op: int, data: Any) -> None:
        if op == Op.HEARTBEAT:
            conn.heartbeats += 1
            self.stats.heartbeats += 1
            if self.ack_heartbeats:
                await conn.send_json({"op": Op.HEARTBEAT_ACK})
                self.stats.heartbeat_acks += 1
            self.notifier.notify()
        elif op == Op.IDENTIFY:
            await self._identify(conn, data or {})
        elif op == Op.RESUME:
            await self._resume(conn, data or {})
        elif conn.session is None:
            await self._close(conn, Close.NOT_AUTHENTICATED)
        elif op == Op.REQUEST_GUILD_MEMBERS:
            self._member_chunks(conn.session, data or {})
        elif op in (Op.PRESENCE_UPDATE, Op.VOICE_STATE_UPDATE):
            pass  # accepted and ignored
        else:
            await self._close(conn, Close.UNKNOWN_OPCODE)

    async def _identify(self, conn: GatewayConnection, data: dict[str, Any]) -> None:
        if data.get("token") != self.token:
            await self._close(conn, Close.AUTHENTICATION_FAILED)
            return
        if conn.session is not None:
            await self._close(conn, Close.ALREADY_AUTHENTICATED)
            return
        intents = int(data.get("intents") or 0)
        if intents & Intent.PRIVILEGED and not self.privileged_intents_enabled:
            await self._close(conn, Close.DISALLOWED_INTENTS)
            return
        shard_id, shard_count = (data.get("shard") or [0, 1])[:2]
        session = GatewaySession(
            id=secrets.token_hex(16),
            intents=intents,
            shard=(int(shard_id), max(1, int(shard_count))),
            max_events=self.max_events_per_session,
        )
        self.sessions[session.id] = session
        bot_id, (shard_id, shard_count) = self.world.bot_user.id, session.shard
        guilds = [
            g
            for g in self.world.guilds.values()
            if bot_id in g.members and (g.id >> 22) % shard_count == shard_id
        ]
        ready = {
            "v": API_VERSION,
            "user": payloads.current_user(self.world.bot_user),
            "guilds": [{"id": str(g.id), "unavailable": True} for g in guilds],
            "session_id": session.id,
            "resume_gateway_url": self.ws_url,
            "shard": list(session.shard),
            "application": {"id": str(self.world.application_id), "flags": 0},
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": [],
            "_trace": ["invite-ledger-sim"],
        }
        session.append("READY", ready)
        if intents & Intent.GUILDS:
            for guild in guilds:
                event = self.world.guild_create_event(guild)
                session.append(event.name, event.data)
        session.ready_seq = session.seq
        self._attach(conn, session, cursor=0)
        self.stats.identifies += 1
        self.stats.last_identify_at = time.monotonic()
        self.notifier.notify()

    async def _resume(self, conn: GatewayConnection, data: dict[str, Any]) -> None:
        if data.get("token") != self.token:
            await self._close(conn, Close.AUTHENTICATION_FAILED)
            return
        session = self.sessions.get(str(data.get("session_id")))
        seq = int(data.get("seq") or 0)
        if session is None or not session.can_resume_from(seq):
            self.stats.failed_resumes += 1
            await conn.send_json({"op": Op.INVALID_SESSION, "d": False})
            self.stats.invalid_sessions_sent += 1
            self.notifier.notify()
            return
        if session.connection is not None and session.connection is not conn:
            await self._close(session.connection, Close.UNKNOWN_ERROR)
        replayed = session.seq - seq
        self._attach(conn, session, cursor=seq)
        session.append("RESUMED", {"_trace": ["invite-ledger-sim"]})
        self.stats.resumes.append(ResumeRecord(session.id, from_seq=seq, replayed=replayed))
        self.notifier.notify()

    def _member_chunks(self, session: GatewaySession, data: dict[str, Any]) -> None:
        """REQUEST_GUILD_MEMBERS → GUILD_MEMBERS_CHUNK events of up to 1000 members."""
        if not session.intents & Intent.GUILD_MEMBERS:
            return
        guild = self.world.guilds.get(int(data.get("guild_id") or 0))
        if guild is None:
            return
        members = list(guild.members.values())
        if user_ids := data.get("user_ids"):
            wanted = {int(u) for u in (user_ids if isinstance(user_ids, list) else [user_ids])}
            members = [m for m in members if m.id in wanted]
        elif query := data.get("query"):
            members = [m for m in members if m.user.username.lower().startswith(str(query).lower())]
        if limit := int(data.get("limit") or 0):
            members = members[:limit]
        chunks = [members[i : i + 1000] for i in range(0, len(members), 1000)] or [[]]
        for index, chunk in enumerate(chunks):
            body: dict[str, Any] = {
                "guild_id": str(guild.id),
                "members": [payloads.member(m) for m in chunk],
                "chunk_index": index,
                "chunk_count": len(chunks),
                "not_found": [],
            }
            if data.get("nonce"):
                body["nonce"] = data["nonce"]
            session.append("GUILD_MEMBERS_CHUNK", body)

    # -- connection ↔ session -----------------------------------------------------------------------

    def _attach(self, conn: GatewayConnection, session: GatewaySession, *, cursor: int) -> None:
        conn.session, conn.cursor = session, cursor
        session.connection, session.detached_at = conn, None
        conn.writer = asyncio.create_task(
            self._write(conn, session), name=f"sim-gateway-writer-{session.id[:8]}"
        )

    def _detach(self, conn: GatewayConnection) -> None:
        if conn.writer is not None:
            conn.writer.cancel()
        session = conn.session
        if session is not None and session.connection is conn:
            session.connection = None
            session.detached_at = time.monotonic()

    async def _write(self, conn: GatewayConnection, session: GatewaySession) -> None:
        """Send the session's log from the connection's cursor on, for as long as the connection lives."""
        try:
            while not conn.ws.closed and session.connection is conn:
                session.new_frame.clear()
                for seq, frame in session.frames_after(conn.cursor):
                    async with conn.send_lock:
                        if conn.ws.closed:
                            return
                        await conn.ws.send_str(frame)
                    conn.cursor = seq
                await session.new_frame.wait()
        except (ConnectionError, RuntimeError) as exc:
            log.debug("gateway writer stopped: %r", exc)
