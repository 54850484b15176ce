"""A hand-scripted guild for the attribution core's table-driven tests.

The test says who joins when and through which invite; Discord's side follows (uses rise, used-up invites
vanish, INVITE_DELETE is sent); gateway events arrive after the delays the test gives, or are lost when the
session drops or the bot stops; the core's fetches are answered with the invite list as it stands when
Discord serves them. Discord's clock is the bot's here. The randomised simulation is benchmarks/guildsim/.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from datetime import datetime, timedelta

import attrs

from benchmarks.guildsim import GUILD, T0, VANITY
from service.attribution import AttributionConfig, Attributor, FetchInvites, LogRecord, WakeAt, restore_events
from service.events import (
    ClockTick,
    Event,
    FetchFailed,
    FetchRateLimited,
    GatewayDisconnected,
    GuildAvailable,
    InviteCreated,
    InviteDeleted,
    InviteFinalUses,
    InvitesFetched,
    MemberInfo,
    MemberJoined,
    MemberRemoved,
)
from service.records import InviteState, JoinRecorded, Record

__all__ = ["GUILD", "T0", "VANITY", "ScriptedGuild"]


class ScriptedGuild:
    """A hand-scripted guild for table-driven tests: the test says who joins when and through which invite,
    and Discord's side follows (uses rise, used-up invites vanish); the core's fetches are answered with the
    invite list as it stands when Discord serves them, or with the answers queued in `answers`: "ok",
    ("429", seconds), "fail", or "silent" (never answered). Discord's clock is the bot's here."""

    def __init__(
        self,
        invites: tuple[InviteState, ...] = (),
        *,
        vanity_uses: int | None = None,
        config: AttributionConfig | None = None,
        fetch_delay: float = 0.2,
        available: bool = True,
    ) -> None:
        self.config = config or AttributionConfig()
        self.core: Attributor | None = Attributor(self.config)
        self.now = 0.0
        self.invites = {invite.code: invite for invite in invites}
        self.vanity_uses = vanity_uses
        self.fetch_delay = fetch_delay
        self.answers: list[str | tuple[str, float]] = []
        self.log: list[Record] = []
        self.fetches: list[float] = []  # when the core asked for a fetch
        self.members: dict[str, datetime] = {}
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = 0
        self._session = 0
        self.connected = True
        if available:
            self.feed(self._available(members=True))

    def at(self, t: float | None = None) -> datetime:
        return T0 + timedelta(seconds=self.now if t is None else t)

    def feed(self, event: Event) -> None:
        if self.core is None:
            return  # the bot is down
        for effect in self.core.handle(event):
            if isinstance(effect, LogRecord):
                self.log.append(effect.record)
            elif isinstance(effect, FetchInvites):
                self.fetches.append(self.now)
                self._answer(effect.request_id)
            elif isinstance(effect, WakeAt):
                self.later(
                    effect.at.timestamp() - T0.timestamp() - self.now, lambda: self.feed(ClockTick(self.at()))
                )

    def gateway(self, delay: float, make: Callable[[], Event]) -> None:
        """A gateway event on its way: lost if the session drops or the bot stops before it arrives."""
        session = self._session

        def deliver() -> None:
            if session == self._session and self.connected:
                self.feed(make())

        self.later(delay, deliver)

    def later(self, delay: float, action: Callable[[], None]) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (self.now + max(0.0, delay), self._seq, action))

    def run(self, seconds: float | None = None) -> None:
        """Let `seconds` pass (or everything scheduled happen, when None)."""
        until = math.inf if seconds is None else self.now + seconds
        while self._heap and self._heap[0][0] <= until:
            t, _, action = heapq.heappop(self._heap)
            self.now = max(self.now, t)
            action()
        if seconds is not None:
            self.now = until

    def _answer(self, request_id: int) -> None:
        answer = self.answers.pop(0) if self.answers else "ok"
        if answer == "silent":
            return
        if answer == "fail":
            self.later(self.fetch_delay, lambda: self.feed(FetchFailed(GUILD, request_id, self.at())))
        elif isinstance(answer, tuple):
            retry = answer[1]
            self.later(
                self.fetch_delay,
                lambda: self.feed(FetchRateLimited(GUILD, request_id, self.at(), retry_after=retry)),
            )
        else:

            def serve() -> None:
                invites, vanity = tuple(self.invites.values()), self.vanity_uses
                self.later(
                    self.fetch_delay / 2,
                    lambda: self.feed(
                        InvitesFetched(
                            GUILD,
                            request_id,
                            self.at(),
                            invites=invites,
                            vanity_code=VANITY if vanity is not None else None,
                            vanity_uses=vanity,
                        )
                    ),
                )

            self.later(self.fetch_delay / 2, serve)

    def _available(self, members: bool) -> GuildAvailable:
        listed = tuple(MemberInfo(u, u, u, joined_at=j) for u, j in self.members.items()) if members else None
        vanity = VANITY if self.vanity_uses is not None else None
        return GuildAvailable(GUILD, "PipVault", self.at(), vanity_code=vanity, members=listed)

    # ----------------------------------------------------------- Discord's side

    def join(
        self,
        user: str,
        via: str | None = None,
        *,
        delay: float = 0.3,
        bot: bool = False,
        flags: int = 0,
        delete_event: float | None = 0.3,
        joined_at: datetime | None = None,
        send: bool = True,
    ) -> MemberInfo:
        """`user` joins now through invite `via` (a code, VANITY, or None); the event arrives after `delay`.
        An invite used up vanishes, and its INVITE_DELETE arrives after `delete_event` (None: never)."""
        if via == VANITY:
            assert self.vanity_uses is not None
            self.vanity_uses += 1
        elif via is not None:
            invite = self.invites[via]
            invite = self.invites[via] = attrs.evolve(invite, uses=invite.uses + 1)
            if invite.max_uses and invite.uses >= invite.max_uses:
                self.delete(via, event=delete_event)
        member = MemberInfo(
            user, f"name{user}", f"Name {user}", joined_at=joined_at or self.at(), bot=bot, flags=flags
        )
        self.members[user] = member.joined_at or self.at()
        if send:
            self.gateway(delay, lambda: MemberJoined(GUILD, self.at(), member=member))
        return member

    def leave(self, user: str, delay: float = 0.2) -> None:
        del self.members[user]
        self.gateway(delay, lambda: MemberRemoved(GUILD, self.at(), user_id=user))

    def create(self, invite: InviteState, event: float | None = 0.2) -> None:
        invite = attrs.evolve(invite, created_at=invite.created_at or self.at())
        self.invites[invite.code] = invite
        if event is not None:
            self.gateway(event, lambda: InviteCreated(GUILD, self.at(), invite=invite))

    def delete(self, code: str, event: float | None = 0.2, *, audit: float | None = None) -> None:
        """`code` is deleted now; INVITE_DELETE arrives after `event`, and the audit log entry with its final
        use count (a deletion by hand) after `audit` (None: never)."""
        gone = self.invites.pop(code)
        if event is not None:
            self.gateway(event, lambda: InviteDeleted(GUILD, self.at(), code=code))
        if audit is not None:
            self.gateway(audit, self.audit_entry(gone, deleted_at=self.at()))

    def audit_entry(self, invite: InviteState, *, deleted_at: datetime) -> Callable[[], InviteFinalUses]:
        """The audit log's INVITE_DELETE entry for `invite` deleted at `deleted_at`, as the core is fed it."""
        return lambda: InviteFinalUses(
            GUILD,
            self.at(),
            code=invite.code,
            uses=invite.uses,
            max_uses=invite.max_uses,
            inviter_id=invite.inviter_id,
            deleted_at=deleted_at,
        )

    def stop(self) -> None:
        """The bot stops: what it held in memory and every event on its way to it are lost; the log stays."""
        self._heap.clear()
        self.core = None
        self.connected = False

    def disconnect(self, *, announce: bool = True) -> None:
        """The gateway session is lost (events on their way are lost too); fetches still work."""
        self._session += 1
        self.connected = False
        if announce:
            self.feed(GatewayDisconnected(self.at()))

    def becomes_available(self, *, with_members: bool = True) -> None:
        """GUILD_CREATE: the guild is available (for a guild built with available=False)."""
        self.feed(self._available(members=with_members))

    def reconnect(self, *, with_members: bool = True) -> None:
        """A new session: Ready, and the guild becomes available again."""
        self._session += 1
        self.connected = True
        self.feed(self._available(members=with_members))

    def start(self, *, with_members: bool = True) -> None:
        """The bot starts again: restores from the log, then the guild becomes available, members listed."""
        self.core = Attributor(self.config)
        self._session += 1
        self.connected = True
        for event in restore_events(self.log, self.config):
            self.feed(event)
        self.feed(self._available(members=with_members))

    # ----------------------------------------------------------- what was logged

    def joins(self) -> list[JoinRecorded]:
        return [r for r in self.log if isinstance(r, JoinRecorded)]

    def record(self, user: str) -> JoinRecorded:
        found = [r for r in self.joins() if r.user_id == user]
        assert len(found) == 1, f"{user}: {len(found)} join records"
        return found[0]
