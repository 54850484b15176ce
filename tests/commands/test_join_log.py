"""The join-log channel: durable joins become lines, batched when they queue up, and a failing channel
never stops the poster."""

from __future__ import annotations

import anyio
import pytest

from commands.join_log import JoinLogPoster, join_line
from service.attribution_actor import Durable
from service.gateway import InviteList
from service.records import AttributionKind, JoinFlag, MemberLeft
from tests.commands.fakes import GUILD, join

pytestmark = pytest.mark.anyio


class Channel:
    def __init__(self, fail_first: int = 0) -> None:
        self.messages: list[str] = []
        self.fail_first = fail_first

    async def send_message(self, channel_id: str, content: str) -> None:
        if self.fail_first:
            self.fail_first -= 1
            raise RuntimeError("Discord said no")
        self.messages.append(content)

    async def fetch_invites(self, guild_id: str) -> InviteList:
        raise NotImplementedError


def test_lines_say_code_and_staff_only_when_credited() -> None:
    exact = join_line(7, join("123456789012345678", "john_doe", flags=(JoinFlag.REJOIN,)))
    assert exact == (
        "📥 **john\\_doe** (<@123456789012345678>) joined via code `abc123XYZ` (staff TravisP)"
        " · exact · rejoin · LSN 7"
    )
    ambiguous = join("1", "x", code=None, staff=None, kind=AttributionKind.AMBIGUOUS, candidates=("a", "b"))
    assert "one of `a`, `b` (ambiguous: no staff credited)" in join_line(8, ambiguous)
    unknown = join("1", "x", code=None, staff=None, kind=AttributionKind.UNKNOWN)
    assert "could not be told" in join_line(9, unknown)


async def test_queued_joins_go_out_together_and_failures_are_counted() -> None:
    send, receive = anyio.create_memory_object_stream[Durable](16)
    channel = Channel(fail_first=1)
    poster = JoinLogPoster(channel, "55", receive, min_interval_s=0.01, max_lines=3)
    send.send_nowait(Durable(1, join("1", "first")))
    for lsn in range(2, 7):
        send.send_nowait(Durable(lsn, join(str(lsn), f"user{lsn}")))
    send.send_nowait(Durable(7, MemberLeft(join("1", "x").timestamp, GUILD, "1")))  # not a join: skipped
    send.close()
    with anyio.fail_after(5):
        await poster.run()
    assert poster.failed == 1  # the first batch of three was refused; the rest went out
    assert [m.count("\n") + 1 for m in channel.messages] == [3]
    assert "user4" in channel.messages[0] and poster.posted == 3
