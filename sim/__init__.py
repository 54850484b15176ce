"""A Discord-compatible server on 127.0.0.1 for the demo, end-to-end and load tests.

One aiohttp server on one port serves Discord's REST API under `/api/v10` and the gateway websocket at
`/gateway`. The real interactions.py 5.16 client logs into it unchanged; the simulator knows nothing of
invite-ledger's internals. It runs on asyncio (like interactions.py).

Pointing the client at it
-------------------------
::

    from interactions import Client, Intents
    from interactions.api.http.route import Route
    from sim import SimServer

    async with SimServer.running(host="127.0.0.1", port=0) as sim:
        guild = sim.add_guild("PipVault")
        Route.BASE = sim.base_url            # a class attribute: restore it afterwards in tests
        client = Client(
            intents=Intents.DEFAULT | Intents.GUILD_MEMBERS,
            token=sim.token,
            sync_interactions=True,           # GET then PUT of application commands (the sim echoes ids)
            delete_unused_application_cmds=True,
            fetch_members=False,              # no member chunking before Ready (startup ~0.3 s)
        )
        task = asyncio.create_task(client.astart())   # stop by cancelling (client.stop() hangs in 5.16.0)
        await sim.wait_ready(timeout=10)      # identified, guilds sent, commands synced

The client asks `GET /gateway` for the websocket URL (`ws://127.0.0.1:PORT/gateway`); frames are JSON text.

Scripting API (`SimServer`)
---------------------------
`SimServer(host="127.0.0.1", port=0, token=None, bot_name="InviteLedger", heartbeat_interval_ms=41250,
privileged_intents_enabled=True, interaction_ack_timeout_s=3.0)`; `SimServer.running(...)` is the same as an
async context manager. `await sim.start()` / `await sim.stop()` for long-lived use.

Ids: every `guild`/`user`/`channel` argument takes the object, an int id or a decimal string.

World
  `sim.token`, `sim.base_url`, `sim.bot_user`, `sim.application_id`
  `sim.add_user(name, bot=False, created_at=None, global_name=None) -> SimUser` — the id is a snowflake made
  at `created_at`, so account age can be read from it (`sim.discord_constants.snowflake_time`).
  `sim.add_guild(name, owner=None, channels=("general", "join-log"), vanity_code=None, vanity_uses=0,
  bot_permissions=Permission.INVITE_TRACKER_BOT, everyone_permissions=...) -> SimGuild` — the bot and the
  owner are members; `guild.channel_named("join-log")`.
  `sim.add_member(guild, user, joined_at=None, roles=None, permissions=None)` — silent (no event, no use).
  `sim.add_role(guild, name, permissions)`, `sim.set_vanity(guild, code, uses=0)`, `sim.invites(guild)`,
  `sim.advance_time(seconds)` — moves the simulated clock (invite expiry, joined_at, new ids).

People
  `sim.join(guild, user, via="CODE" | "vanity" | None) -> SimMember` — uses (or vanity uses) rise,
  GUILD_MEMBER_ADD is dispatched with `joined_at` and flags (DID_REJOIN after a previous leave); an invite
  reaching max_uses is deleted and INVITE_DELETE follows the join; an expired invite raises ValueError.
  `member.joined_via` is the ground truth to compare the bot's attribution with.
  `sim.leave(guild, user)` — GUILD_MEMBER_REMOVE. `sim.resend_member_add(guild, user)` — a duplicate event.
  `sim.create_invite(guild, inviter, code=None, max_uses=0, max_age=0, channel=None) -> SimInvite` —
  INVITE_CREATE. `sim.delete_invite(code)` — INVITE_DELETE.

Slash commands and buttons
  `sim.registered_commands` — {guild id or None (global): [command JSON with "id"]}.
  `sim.invoke(guild, user, "name" | "name sub", options={...}, permissions=None, channel=None)
  -> SimInteraction` — INTERACTION_CREATE type 2 with typed options (USER options take a user and carry
  `resolved` users, plus members for people still in the guild), the member's permissions string,
  guild_id, channel_id, token and app_permissions.
  `await sim.answer(interaction, timeout=5.0) -> Answer` — the first answer with content (type 4/7
  callback, or the edit / follow-up completing a deferral). `sim.answers(interaction)` — every answer so
  far; `await sim.wait_answers(interaction, count, timeout)`.
  `Answer`: `kind` ("callback", "followup", "edit", "delete"), `callback_type`, `is_deferral`, `ephemeral`,
  `data`, `content`, `embeds`, `files` (`StoredFile.filename/.content_type/.data` bytes), `message`.
  `interaction.messages` — what the user sees now (original response, then follow-ups, edits applied).
  `sim.click(message_or_answer, custom_id, user) -> SimInteraction` — a button press (type 3).
  Discord forgets an interaction not acknowledged within 3 s (`interaction_ack_timeout_s`, None: off).

Channel messages
  `sim.channel_messages(channel)`, `await sim.wait_channel_message(channel, predicate, timeout)` —
  messages the bot posted (POST /channels/{id}/messages, multipart attachments kept as bytes).

Gateway and outages
  `await sim.wait_ready(timeout, commands=True)`, `await sim.wait_resumed(count, timeout)`,
  `await sim.wait_identifies(count, timeout)`, `await sim.wait_until(predicate, timeout, what)`.
  `await sim.drop_connection(resume=True)` — close 4000: the client RESUMEs and missed events are replayed
  (resume=False: close 4007, the session ends, the client identifies again).
  `async with sim.disconnected():` — drop and keep the client away for the block; events scripted inside
  are replayed by the RESUME afterwards.
  `await sim.invalidate_session()` — INVALID_SESSION (d=false): a fresh IDENTIFY and READY (Ready, not
  Startup, fires in the client). `await sim.request_reconnect()` — op 7.
  `sim.set_heartbeat_acks(False)` — zombie connection. `sim.set_outage(rest=..., gateway=...)`.
  `sim.set_invites_budget(n, window_s)` — GET /guilds/{id}/invites beyond n per window per guild answers 429
  with `retry_after` (JSON) and Retry-After / X-RateLimit-* headers; `None` lifts the limit.
  `sim.set_global_budget(n, window_s)` — Discord's global limit, on by default at 50 requests per second
  over every authorised REST route but the interaction endpoints; beyond it a 429 with `"global": true` and
  X-RateLimit-Global / X-RateLimit-Scope: global. Lower it to play another process sharing the token.
  `sim.stats` — counters: identifies, resumes (with replayed counts), heartbeats/acks, rate_limited
  (globally_rate_limited: those for the global limit),
  unhandled_requests (routes the simulator lacks), …

Behaviour worth knowing
  Dispatches respect intents (GUILD_MEMBERS for member events, GUILD_INVITES for invite events) and the
  bot's permissions (INVITE_CREATE/DELETE need Manage Channels; invite `uses` need Manage Guild; the vanity
  URL needs Manage Guild). Expired invites vanish from the list without an event. JSON answers carry
  `Content-Type: application/json` exactly.

Command line: `invite-ledger sim [--port N] [--token T] [--script]` (see `sim.cli`).
"""

from __future__ import annotations

from sim.discord_constants import Intent, MemberFlag, Permission, snowflake_at, snowflake_time
from sim.interactions import Answer, SimInteraction
from sim.model import VANITY, SimChannel, SimGuild, SimInvite, SimMember, SimMessage, SimUser, StoredFile
from sim.server import SimServer

__all__ = [
    "VANITY",
    "Answer",
    "Intent",
    "MemberFlag",
    "Permission",
    "SimChannel",
    "SimGuild",
    "SimInteraction",
    "SimInvite",
    "SimMember",
    "SimMessage",
    "SimServer",
    "SimUser",
    "StoredFile",
    "snowflake_at",
    "snowflake_time",
]
