"""A demo guild and a short join scenario, shared by `invite-ledger sim` and the demo run.

The guild mirrors the brief: "PipVault" with staff members who own invites (TravisP's `abc123XYZ`), a
vanity URL, some members who joined earlier, and a `join-log` channel.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta

import attrs

from sim.discord_constants import Permission
from sim.model import VANITY, SimChannel, SimGuild, SimInvite, SimMember, SimUser
from sim.server import SimServer


@attrs.define
class DemoWorld:
    guild: SimGuild
    join_log: SimChannel
    staff: dict[str, SimUser]
    #: Staff member's name → their invite.
    invites: dict[str, SimInvite]
    earlier_members: list[SimMember]


def populate_demo_guild(sim: SimServer) -> DemoWorld:
    """Create PipVault: owner, two staff with invites, five members who joined days ago, a vanity URL."""
    now = sim.world.now()
    owner = sim.add_user("pipvault-owner", created_at=now - timedelta(days=2000))
    guild = sim.add_guild("PipVault", owner=owner, vanity_code="pipvault", vanity_uses=3)
    staff_role = sim.add_role(guild, "Staff", Permission.MANAGE_GUILD | Permission.CREATE_INSTANT_INVITE)
    staff = {
        name: sim.add_user(name, created_at=now - timedelta(days=days))
        for name, days in (("TravisP", 1500), ("MayaK", 900))
    }
    for person in staff.values():
        sim.add_member(guild, person, joined_at=now - timedelta(days=300), roles=[staff_role])
    invites = {
        "TravisP": sim.create_invite(guild, staff["TravisP"], code="abc123XYZ"),
        "MayaK": sim.create_invite(guild, staff["MayaK"], code="maya2024", max_uses=10),
    }
    invites["TravisP"].uses, invites["MayaK"].uses = 5, 2
    earlier = []
    for index, name in enumerate(("alice", "bob", "carol", "dave", "erin")):
        person = sim.add_user(name, created_at=now - timedelta(days=400 + 30 * index))
        earlier.append(sim.add_member(guild, person, joined_at=now - timedelta(days=10 - index)))
    return DemoWorld(guild, guild.channel_named("join-log"), staff, invites, earlier)


async def run_join_script(
    sim: SimServer, demo: DemoWorld, *, pause_s: float = 0.5, say: Callable[[str], None] = print
) -> list[SimMember]:
    """A short scenario: joins through two staff invites, the vanity URL and no invite; a leave; a rejoin."""
    now = sim.world.now()
    john = sim.add_user("john_doe", global_name="John Doe", created_at=now - timedelta(days=700))
    fresh = sim.add_user("brand_new_account", created_at=now - timedelta(days=2))
    vanity_visitor = sim.add_user("vanity_visitor", created_at=now - timedelta(days=365))
    drifter = sim.add_user("discovery_drifter", created_at=now - timedelta(days=90))
    travis_code, maya_code = demo.invites["TravisP"].code, demo.invites["MayaK"].code
    guild = demo.guild
    steps: list[tuple[str, Callable[[], SimMember]]] = [
        (
            f"john_doe joins through TravisP's invite {travis_code}",
            lambda: sim.join(guild, john, travis_code),
        ),
        (
            f"brand_new_account (2 days old) joins through MayaK's {maya_code}",
            lambda: sim.join(guild, fresh, maya_code),
        ),
        ("vanity_visitor joins through the vanity URL", lambda: sim.join(guild, vanity_visitor, VANITY)),
        ("discovery_drifter joins with no invite", lambda: sim.join(guild, drifter, None)),
        ("john_doe leaves", lambda: sim.leave(guild, john)),
        (
            f"john_doe rejoins through {travis_code} (flag DID_REJOIN)",
            lambda: sim.join(guild, john, travis_code),
        ),
    ]
    done = []
    for description, step in steps:
        say(f"  sim: {description}")
        done.append(step())
        await asyncio.sleep(pause_s)
    return done
