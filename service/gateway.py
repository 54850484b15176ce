"""The gateway port: what the service needs from Discord, and a scripted in-memory Discord for tests.

The port delivers domain events (`service.events`) on a bounded stream and performs the REST calls the
attribution actor asks for. The interactions.py adapter (`service.discord_adapter`) implements it against
Discord or `sim/`; `ScriptedGateway` implements it in memory, backend-neutral, so the pipeline's tests and
benchmarks run on asyncio and trio without a network.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Protocol

import anyio
import anyio.lowlevel
import attrs
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from service.events import (
    Event,
    GuildAvailable,
    InviteCreated,
    InviteDeleted,
    MemberInfo,
    MemberJoined,
    MemberRemoved,
)
from service.records import InviteState

DISCORD_EPOCH_MS = 1420070400000


@attrs.frozen
class InviteList:
    """A guild's invites and vanity URL as one fetch saw them."""

    invites: tuple[InviteState, ...]
    vanity_code: str | None = None
    vanity_uses: int | None = None


class RateLimited(Exception):
    """Discord answered 429 for the invites route; no new request before `retry_after` seconds."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"rate limited, retry after {retry_after:.3f}s")
        self.retry_after = retry_after


class FetchError(Exception):
    """The invite fetch gave nothing usable (an error, or the library's None after repeated 429s)."""


class GatewayPort(Protocol):
    """What the attribution actor needs from Discord."""

    @property
    def events(self) -> MemoryObjectReceiveStream[Event]: ...

    async def fetch_invites(self, guild_id: str) -> InviteList:
        """GET /guilds/{id}/invites plus the vanity URL. Raises RateLimited or FetchError."""
        ...

    async def list_members(self, guild_id: str) -> tuple[MemberInfo, ...]: ...


def snowflake_at(moment: datetime, sequence: int) -> str:
    """A Discord snowflake whose timestamp is `moment` (so account age can be read from the id)."""
    ms = int(moment.timestamp() * 1000) - DISCORD_EPOCH_MS
    return str((ms << 22) | (sequence & 0x3FFFFF))


@attrs.define
class _Invite:
    code: str
    inviter_id: str
    inviter_name: str
    uses: int = 0
    max_uses: int = 0
    # The last snapshot handed out, reused while `uses` is the same (a cache: not part of the value).
    _state: InviteState | None = attrs.field(default=None, init=False, eq=False, repr=False)

    def state(self) -> InviteState:
        # A fetch lists every invite of the guild and a join changes one: reusing the unchanged ones'
        # (frozen) snapshots keeps the scripted Discord's own cost out of the pipeline benchmark's figure.
        state = self._state
        if state is None or state.uses != self.uses:
            state = self._state = InviteState(
                code=self.code,
                uses=self.uses,
                max_uses=self.max_uses,
                inviter_id=self.inviter_id,
                inviter_name=self.inviter_name,
            )
        return state


@attrs.define
class _Guild:
    guild_id: str
    name: str
    invites: dict[str, _Invite] = attrs.field(factory=dict)
    vanity_code: str | None = None
    vanity_uses: int = 0
    members: dict[str, MemberInfo] = attrs.field(factory=dict)


class ScriptedGateway:
    """A scripted Discord in memory: the test says who joins through which invite; the gateway keeps the
    uses counters as Discord would, emits the events Discord would send, and answers invite fetches from
    its counters (or with 429s, when told to)."""

    def __init__(self, *, buffer: int = 1024) -> None:
        self._send: MemoryObjectSendStream[Event]
        self._send, self._receive = anyio.create_memory_object_stream[Event](buffer)
        self._guilds: dict[str, _Guild] = {}
        self._ids = itertools.count(1)
        self.rate_limit_next: list[float] = []  # retry_after values for the next fetches, in order
        self.fail_next = 0  # number of next fetches that fail
        self.fetches = 0

    @property
    def events(self) -> MemoryObjectReceiveStream[Event]:
        return self._receive

    def now(self) -> datetime:
        return datetime.now(UTC)

    # --- scripting -----------------------------------------------------------------------------------

    def add_guild(self, guild_id: str, name: str, *, vanity_code: str | None = None) -> None:
        self._guilds[guild_id] = _Guild(guild_id, name, vanity_code=vanity_code)

    def create_invite(
        self, guild_id: str, code: str, inviter_id: str, inviter_name: str, *, max_uses: int = 0
    ) -> None:
        invite = _Invite(code, inviter_id, inviter_name, max_uses=max_uses)
        self._guilds[guild_id].invites[code] = invite

    async def announce_invite(self, guild_id: str, code: str) -> None:
        await self._send.send(
            InviteCreated(guild_id, self.now(), invite=self._guilds[guild_id].invites[code].state())
        )

    async def make_available(self, guild_id: str, *, with_invites: bool = False) -> None:
        guild = self._guilds[guild_id]
        now = self.now()
        await self._send.send(
            GuildAvailable(
                guild_id,
                guild.name,
                now,
                vanity_code=guild.vanity_code,
                members=tuple(guild.members.values()),
                invites=tuple(i.state() for i in guild.invites.values()) if with_invites else None,
                vanity_uses=guild.vanity_uses if with_invites else None,
                invites_requested_at=now if with_invites else None,
            )
        )

    def new_user(self, name: str, *, age: timedelta = timedelta(days=365), bot: bool = False) -> MemberInfo:
        user_id = snowflake_at(self.now() - age, next(self._ids))
        return MemberInfo(user_id=user_id, username=name, display_name=name.title(), bot=bot)

    async def join(self, guild_id: str, member: MemberInfo, via: str | None, *, emit: bool = True) -> None:
        """`via` is an invite code, "vanity", or None (discovery, a bot, a widget)."""
        guild = self._guilds[guild_id]
        deleted: str | None = None
        if via == "vanity":
            guild.vanity_uses += 1
        elif via is not None:
            invite = guild.invites[via]
            invite.uses += 1
            if invite.max_uses and invite.uses >= invite.max_uses:
                del guild.invites[via]  # Discord deletes an invite used up to its max
                deleted = via
        now = self.now()
        # Built field by field: attrs.evolve looks the fields up by name each time, a cost the pipeline
        # benchmark would count as the service's.
        joined = MemberInfo(
            member.user_id, member.username, member.display_name, now, member.bot, member.flags
        )
        guild.members[member.user_id] = joined
        if emit:
            await self._send.send(MemberJoined(guild_id, now, member=joined, guild_name=guild.name))
            if deleted is not None:
                await self._send.send(InviteDeleted(guild_id, now, code=deleted))

    async def leave(self, guild_id: str, user_id: str) -> None:
        self._guilds[guild_id].members.pop(user_id, None)
        await self._send.send(MemberRemoved(guild_id, self.now(), user_id=user_id))

    async def send(self, events: Iterable[Event]) -> None:
        for event in events:
            await self._send.send(event)

    async def aclose(self) -> None:
        await self._send.aclose()

    def uses(self, guild_id: str) -> dict[str, int]:
        return {code: i.uses for code, i in self._guilds[guild_id].invites.items()}

    # --- the port -------------------------------------------------------------------------------------

    async def fetch_invites(self, guild_id: str) -> InviteList:
        self.fetches += 1
        await anyio.lowlevel.checkpoint()  # a real fetch yields to the loop; so does this one
        if self.rate_limit_next:
            raise RateLimited(self.rate_limit_next.pop(0))
        if self.fail_next:
            self.fail_next -= 1
            raise FetchError("scripted failure")
        guild = self._guilds[guild_id]
        return InviteList(
            invites=tuple(i.state() for i in guild.invites.values()),
            vanity_code=guild.vanity_code,
            vanity_uses=guild.vanity_uses if guild.vanity_code else None,
        )

    async def list_members(self, guild_id: str) -> tuple[MemberInfo, ...]:
        return tuple(self._guilds[guild_id].members.values())
