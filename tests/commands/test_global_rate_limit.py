"""Many guilds at once against Discord's global limit (50 REST requests per second per bot token): the real
service behind the real client, on the simulator that enforces the limit.

A join in every guild at the same moment makes the service fetch every guild's invites at once. The
client's own global throttle (interactions.py: 45 per second) must keep the bot under Discord's limit, and
when someone else sharing the token spends most of the budget (a second process, a script), the global 429s
must be waited out: either way every join is recorded and credited to the staff member whose invite it used.

asyncio only (interactions.py); see conftest.py.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import anyio
import anyio.abc
import attrs
import pytest

from service.app import Service
from service.attribution_actor import Durable
from service.records import AttributionKind, JoinRecorded
from sim import SimServer, SimUser
from tests.commands.support import FAST, service_behind_client

pytestmark = pytest.mark.anyio

GUILDS = 60
# Fetches queue behind the global limit for seconds: long enough that no join is decided before the
# fetch that counts it is answered (a join decided on time-out would be ambiguous, not wrong).
CORE = attrs.evolve(FAST, max_join_wait=timedelta(seconds=30))


@attrs.frozen
class Planned:
    guild_id: str
    user: SimUser
    code: str
    staff_id: str


@attrs.define
class Fleet:
    sim: SimServer
    service: Service
    durable: anyio.abc.ObjectReceiveStream[Durable]
    plan: list[Planned]

    def join_everywhere(self) -> None:
        for p in self.plan:
            self.sim.join(p.guild_id, p.user, via=p.code)

    async def recorded_joins(self, timeout: float) -> dict[str, JoinRecorded]:
        users = {str(p.user.id) for p in self.plan}
        joins: dict[str, JoinRecorded] = {}
        with anyio.fail_after(timeout):
            while not users <= joins.keys():
                durable = await self.durable.receive()
                if isinstance(durable.record, JoinRecorded):
                    joins[durable.record.user_id] = durable.record
        return joins


@pytest.fixture
async def fleet(sim: SimServer, tmp_path: Path) -> AsyncIterator[Fleet]:
    rng = random.Random(20261124)
    plan = []
    for g in range(GUILDS):
        guild = sim.add_guild(f"Guild {g}")
        staff = [sim.add_user(f"staff{g}.{s}") for s in range(2)]
        for s, member in enumerate(staff):
            sim.add_member(guild, member)
            sim.create_invite(guild, member, code=f"g{g}s{s}")
        s = rng.randrange(2)
        plan.append(Planned(str(guild.id), sim.add_user(f"joiner{g}"), f"g{g}s{s}", str(staff[s].id)))
    durable_send, durable_receive = anyio.create_memory_object_stream[Durable](4 * GUILDS)
    service, _ = service_behind_client(sim, tmp_path / "data", durable_send, core=CORE)

    def snapshots() -> int:
        return sum(1 for r in sim.rest.requests if r.path.endswith("/invites") and r.status == 200)

    async with anyio.create_task_group() as tg, durable_send, durable_receive:
        with anyio.fail_after(30):
            await tg.start(service.run)
            # Every guild's first invite snapshot (the baseline its joins are compared with), then settled.
            await sim.wait_until(lambda: snapshots() >= GUILDS, 30, "every guild's first invite snapshot")
        await anyio.sleep(0.3)
        try:
            yield Fleet(sim, service, durable_receive, plan)
        finally:
            service.stop()


def assert_all_credited_right(fleet: Fleet, joins: dict[str, JoinRecorded]) -> None:
    for p in fleet.plan:
        record = joins[str(p.user.id)]
        credited = (record.kind, record.invite_code, record.staff_id)
        assert credited == (AttributionKind.EXACT, p.code, p.staff_id)


async def test_a_join_in_every_guild_at_once_under_discords_global_limit(fleet: Fleet) -> None:
    sim = fleet.sim
    # The first wave on Discord's own limit. A fetch per guild at least, all asked for at once: more than
    # the limit allows in a second, so the client had to spread them, and did so without one global 429.
    before = len(sim.rest.requests)
    fleet.join_everywhere()
    assert_all_credited_right(fleet, await fleet.recorded_joins(timeout=30))
    assert len(sim.rest.requests) - before > 50
    assert sim.stats.globally_rate_limited == 0

    # The second wave while another process on the same token leaves this bot 15 requests per second of
    # the 50: the client's throttle no longer keeps it under, the global 429s are waited out (or the
    # fetch fails and the core asks again), and still no join is decided before a fetch counted it.
    sim.set_global_budget(15, window_s=1.0)
    fleet.plan = [attrs.evolve(p, user=sim.add_user(f"second {p.user.username}")) for p in fleet.plan]
    fleet.join_everywhere()
    assert_all_credited_right(fleet, await fleet.recorded_joins(timeout=60))
    assert sim.stats.globally_rate_limited > 0  # the limit was met, not merely approached
