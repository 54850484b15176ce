"""The optional join-log channel: one line per join, posted once the join is durable (and one per
settlement by hand, `/settle_join`).

It reads `Durable` items from the attribution actor's memory stream (`durable_out`), which the actor fills
with `send_nowait` and skips when full, so a slow channel (Discord allows about five messages per five
seconds per channel) never holds up a join: the record is on disk before any of this runs. Joins that queue
up meanwhile go out together, several lines to a message, at most one message per `min_interval_s`.
"""

from __future__ import annotations

import logging

import anyio
import attrs
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream

from commands.ports import DiscordPort
from commands.render import md
from service.attribution_actor import Durable
from service.logs import log_event
from service.records import CREDITING_KINDS, AttributionKind, JoinRecorded, JoinSettled, Record

log = logging.getLogger(__name__)

MESSAGE_MAX = 2000  # Discord's limit for a message's content


def join_line(lsn: int, join: JoinRecorded) -> str:
    who = f"**{md(join.username, 40)}** (<@{join.user_id}>)"
    if join.kind in CREDITING_KINDS and join.invite_code:
        staff = f" (staff {md(join.staff_username, 40)})" if join.staff_id else ""
        how = f"joined via code `{join.invite_code}`{staff}"
    elif join.kind is AttributionKind.VANITY:
        how = f"joined via the vanity URL `{join.invite_code or ''}`"
    elif join.kind is AttributionKind.AMBIGUOUS:
        candidates = ", ".join(f"`{c}`" for c in join.candidates) or "several invites"
        how = f"joined via one of {candidates} (ambiguous: no staff credited)"
    else:
        how = "joined; the invite could not be told (no staff credited)"
    flags = f" · {', '.join(f.value for f in join.flags)}" if join.flags else ""
    return f"📥 {who} {how} · {join.kind.value}{flags} · LSN {lsn}"


def settled_line(lsn: int, settled: JoinSettled) -> str:
    """A settlement by hand, announced like a join; not its reason, which may say things about people."""
    staff = f" (staff {md(settled.staff_username, 40)})" if settled.staff_username else ""
    return (
        f"⚖️ The join of <@{settled.user_id}> (LSN {settled.join_lsn}) was settled by "
        f"{md(settled.settled_by_name, 40)}: code `{settled.invite_code}`{staff} · LSN {lsn}"
    )


def announcement(lsn: int, record: Record) -> str | None:
    if isinstance(record, JoinRecorded):
        return join_line(lsn, record)
    if isinstance(record, JoinSettled):
        return settled_line(lsn, record)
    return None


@attrs.define(eq=False)
class JoinLogPoster:
    discord: DiscordPort
    channel_id: str
    durable: MemoryObjectReceiveStream[Durable]
    min_interval_s: float = 1.2
    max_lines: int = 10
    posted: int = 0  # joins announced
    failed: int = 0  # messages Discord did not take (the joins are recorded all the same)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        async with self.durable:
            async for first in self.durable:
                batch = [first]
                while len(batch) < self.max_lines:
                    try:
                        batch.append(self.durable.receive_nowait())
                    except (anyio.WouldBlock, anyio.EndOfStream):
                        break
                lines = [line for d in batch if (line := announcement(d.lsn, d.record)) is not None]
                if not lines:
                    continue
                await self._post(lines)
                await anyio.sleep(self.min_interval_s)

    async def _post(self, lines: list[str]) -> None:
        content = "\n".join(lines)
        if len(content) > MESSAGE_MAX:
            content = content[: MESSAGE_MAX - 1] + "…"
        try:
            await self.discord.send_message(self.channel_id, content)
        except Exception as exc:  # best effort: an announcement is never worth stopping the service for
            self.failed += 1
            log_event(
                log, "join_log_post_failed", level=logging.WARNING, channel=self.channel_id, error=str(exc)
            )
        else:
            self.posted += len(lines)
