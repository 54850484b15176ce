"""The REST API under /api/v10 (aiohttp), answering as Discord does for the routes an invite tracker uses.

Every JSON answer carries `Content-Type: application/json` exactly (no charset): interactions.py 5.16 only
decodes JSON when the header is exactly that. Errors are Discord's `{"message", "code"}` bodies. Requests to
routes not implemented here get a 404 and are listed in `SimStats.unhandled_requests`, so a test can tell
"the library called something the simulator does not know" from a real 404.
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import BodyPartReader, web

from sim import payloads
from sim.discord_constants import API_VERSION, Permission
from sim.errors import DiscordAPIError
from sim.gateway import Gateway
from sim.interactions import InteractionDesk
from sim.model import StoredFile
from sim.ratelimit import GlobalBudget, RouteBudget
from sim.stats import ChangeNotifier, RequestRecord, SimStats
from sim.world import SimWorld

log = logging.getLogger("sim.rest")

API_PREFIX = f"/api/v{API_VERSION}"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
#: Routes whose URL token is the credential (no `Authorization: Bot …` header), as on Discord.
_TOKENLESS_PREFIXES = (f"{API_PREFIX}/interactions/", f"{API_PREFIX}/webhooks/", f"{API_PREFIX}/gateway")


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=json.dumps(data).encode(),
        status=status,
        headers={"Content-Type": "application/json", **(headers or {})},
    )


async def read_body(request: web.Request) -> tuple[Any, list[StoredFile]]:
    """A JSON body, or a multipart one (`payload_json` plus `files[n]`, bytes kept)."""
    if request.content_type.startswith("multipart/"):
        body: Any = {}
        uploads: dict[int, StoredFile] = {}
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader) or part.name is None:
                continue
            if part.name == "payload_json":
                body = json.loads(await part.text())
            elif part.name.startswith("files[") and part.name.endswith("]"):
                index = int(part.name[6:-1])
                data = await part.read(decode=False)
                uploads[index] = StoredFile(
                    filename=part.filename or f"file{index}",
                    content_type=part.headers.get("Content-Type"),
                    data=bytes(data),
                )
        described = body.get("attachments") if isinstance(body, dict) else None
        for entry in described or []:
            upload_index = _int_or_none(entry.get("id"))
            if upload_index is not None and upload_index in uploads:
                uploads[upload_index].description = entry.get("description")
        return body, [uploads[i] for i in sorted(uploads)]
    raw = await request.read()
    if not raw:
        return {}, []
    try:
        return json.loads(raw), []
    except ValueError:
        raise DiscordAPIError(400, "400: Bad Request", 50109) from None


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


class RestApi:
    def __init__(
        self,
        world: SimWorld,
        desk: InteractionDesk,
        gateway: Gateway,
        stats: SimStats,
        notifier: ChangeNotifier,
        *,
        token: str,
    ) -> None:
        self.world, self.desk, self.gateway = world, desk, gateway
        self.stats, self.notifier = stats, notifier
        self.token = token
        #: None: no limit (and no X-RateLimit headers) on GET /guilds/{id}/invites.
        self.invites_budget: RouteBudget | None = None
        #: Discord's global limit over every authorised route but the interaction endpoints (None: off).
        self.global_budget: GlobalBudget | None = GlobalBudget()
        #: True: every REST request answers 502 (a Discord outage as Cloudflare shows it).
        self.outage = False
        self.requests: deque[RequestRecord] = deque(maxlen=10_000)

    def add_routes(self, app: web.Application) -> None:
        p = API_PREFIX
        w = "/webhooks/{app_id}/{token}"
        app.middlewares.append(self._middleware)
        app.router.add_routes(
            [
                web.get(f"{p}/users/@me", self.current_user),
                web.get(f"{p}/users/{{user_id}}", self.get_user),
                web.get(f"{p}/oauth2/applications/@me", self.application),
                web.get(f"{p}/applications/@me", self.application),
                web.get(f"{p}/gateway", self.gateway_url),
                web.get(f"{p}/gateway/bot", self.gateway_bot),
                web.get(f"{p}/applications/{{app_id}}/commands", self.get_commands),
                web.put(f"{p}/applications/{{app_id}}/commands", self.put_commands),
                web.post(f"{p}/applications/{{app_id}}/commands", self.post_command),
                web.delete(f"{p}/applications/{{app_id}}/commands/{{command_id}}", self.delete_command),
                web.get(f"{p}/applications/{{app_id}}/guilds/{{guild_id}}/commands", self.get_commands),
                web.put(f"{p}/applications/{{app_id}}/guilds/{{guild_id}}/commands", self.put_commands),
                web.post(f"{p}/applications/{{app_id}}/guilds/{{guild_id}}/commands", self.post_command),
                web.delete(
                    f"{p}/applications/{{app_id}}/guilds/{{guild_id}}/commands/{{command_id}}",
                    self.delete_command,
                ),
                web.get(f"{p}/guilds/{{guild_id}}", self.get_guild),
                web.get(f"{p}/guilds/{{guild_id}}/channels", self.guild_channels),
                web.get(f"{p}/guilds/{{guild_id}}/invites", self.guild_invites),
                web.get(f"{p}/guilds/{{guild_id}}/vanity-url", self.vanity_url),
                web.get(f"{p}/guilds/{{guild_id}}/members", self.list_members),
                web.get(f"{p}/guilds/{{guild_id}}/members/{{user_id}}", self.get_member),
                web.get(f"{p}/invites/{{code}}", self.get_invite),
                web.delete(f"{p}/invites/{{code}}", self.delete_invite),
                web.get(f"{p}/channels/{{channel_id}}", self.get_channel),
                web.post(f"{p}/channels/{{channel_id}}/messages", self.post_message),
                web.get(f"{p}/channels/{{channel_id}}/messages/{{message_id}}", self.get_channel_message),
                web.post(
                    f"{p}/interactions/{{interaction_id}}/{{token}}/callback", self.interaction_callback
                ),
                web.post(f"{p}{w}", self.webhook_followup),
                web.get(f"{p}{w}/messages/{{message_id}}", self.webhook_get_message),
                web.patch(f"{p}{w}/messages/{{message_id}}", self.webhook_edit_message),
                web.delete(f"{p}{w}/messages/{{message_id}}", self.webhook_delete_message),
                web.get("/attachments/{channel_id}/{attachment_id}/{filename}", self.attachment_bytes),
            ]
        )
        app.router.add_route("*", "/{tail:.*}", self.unhandled)

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith(API_PREFIX):
            return await handler(request)  # the gateway websocket and attachment downloads
        self.stats.rest_requests += 1
        try:
            if self.outage:
                response: web.StreamResponse = web.Response(
                    status=502, text="502 Bad Gateway (simulated outage)"
                )
            elif not request.path.startswith(_TOKENLESS_PREFIXES):
                if request.headers.get("Authorization") != f"Bot {self.token}":
                    response = json_response({"message": "401: Unauthorized", "code": 0}, 401)
                elif self.global_budget is not None and (over := self.global_budget.take()) is not None:
                    self.stats.rate_limited += 1
                    self.stats.globally_rate_limited += 1
                    response = json_response(over.body(), 429, over.headers)
                else:
                    response = await handler(request)
            else:
                response = await handler(request)
        except DiscordAPIError as exc:
            response = json_response(exc.body(), exc.status)
        except web.HTTPException:
            raise
        except Exception:
            log.exception("simulator error answering %s %s", request.method, request.path)
            response = json_response(
                {"message": "500: Internal Server Error (simulator bug)", "code": 0}, 500
            )
        self.requests.append(RequestRecord(request.method, request.path, response.status, time.monotonic()))
        self.notifier.notify()
        return response

    async def unhandled(self, request: web.Request) -> web.StreamResponse:
        self.stats.unhandled_requests.append(f"{request.method} {request.path}")
        return json_response({"message": "404: Not Found", "code": 0}, 404)

    # -- identity and gateway -----------------------------------------------------------------------

    async def current_user(self, request: web.Request) -> web.StreamResponse:
        self.stats.last_login_at = time.monotonic()
        return json_response(payloads.current_user(self.world.bot_user))

    async def get_user(self, request: web.Request) -> web.StreamResponse:
        return json_response(payloads.user(self.world.user(request.match_info["user_id"])))

    async def application(self, request: web.Request) -> web.StreamResponse:
        return json_response(
            {
                "id": str(self.world.application_id),
                "name": self.world.application_name,
                "icon": None,
                "description": "invite-ledger (simulated)",
                "summary": "",  # deprecated by Discord, still required by interactions.py 5.16
                "bot_public": False,
                "bot_require_code_grant": False,
                "owner": payloads.user(self.world.app_owner),
                "verify_key": "0" * 64,
                "team": None,
                "flags": (1 << 15) | (1 << 13),  # GATEWAY_GUILD_MEMBERS_LIMITED, GATEWAY_PRESENCE_LIMITED
                "bot": payloads.user(self.world.bot_user),
            }
        )

    async def gateway_url(self, request: web.Request) -> web.StreamResponse:
        return json_response({"url": self.gateway.ws_url})

    async def gateway_bot(self, request: web.Request) -> web.StreamResponse:
        limit = {"total": 1000, "remaining": 1000, "reset_after": 0, "max_concurrency": 1}
        return json_response({"url": self.gateway.ws_url, "shards": 1, "session_start_limit": limit})

    # -- application commands -----------------------------------------------------------------------

    def _command_scope(self, request: web.Request) -> int | None:
        if int(request.match_info["app_id"]) != self.world.application_id:
            raise DiscordAPIError(403, "Missing Access", 50001)
        self.stats.last_command_sync_at = time.monotonic()
        return self.world.scope_of(request.match_info.get("guild_id"))

    async def get_commands(self, request: web.Request) -> web.StreamResponse:
        return json_response(self.world.commands.in_scope(self._command_scope(request)))

    async def put_commands(self, request: web.Request) -> web.StreamResponse:
        scope = self._command_scope(request)
        body, _ = await read_body(request)
        return json_response(self.world.commands.put(scope, body))

    async def post_command(self, request: web.Request) -> web.StreamResponse:
        scope = self._command_scope(request)
        body, _ = await read_body(request)
        return json_response(self.world.commands.upsert(scope, body), 201)

    async def delete_command(self, request: web.Request) -> web.StreamResponse:
        self.world.commands.delete(self._command_scope(request), request.match_info["command_id"])
        return web.Response(status=204)

    # -- guilds, invites, members -------------------------------------------------------------------

    async def get_guild(self, request: web.Request) -> web.StreamResponse:
        guild = self.world.guild(request.match_info["guild_id"])
        data = payloads.guild_base(guild)
        if request.query.get("with_counts") in ("true", "1", "True"):
            data |= {"approximate_member_count": len(guild.members), "approximate_presence_count": 0}
        return json_response(data)

    async def guild_channels(self, request: web.Request) -> web.StreamResponse:
        guild = self.world.guild(request.match_info["guild_id"])
        return json_response([payloads.channel(c) for c in guild.channels.values()])

    async def guild_invites(self, request: web.Request) -> web.StreamResponse:
        guild = self.world.guild(request.match_info["guild_id"])
        headers: dict[str, str] = {}
        if self.invites_budget is not None:
            decision = self.invites_budget.take(str(guild.id))
            headers = decision.headers
            if not decision.allowed:
                self.stats.rate_limited += 1
                return json_response(decision.body(), 429, headers)
        with_uses = self.world.bot_can(guild, Permission.MANAGE_GUILD)
        invites = [
            payloads.invite(i, guild, self.world.users.get(i.inviter_id or 0), with_uses=with_uses)
            for i in self.world.live_invites(guild)
        ]
        return json_response(invites, headers=headers)

    async def vanity_url(self, request: web.Request) -> web.StreamResponse:
        guild = self.world.guild(request.match_info["guild_id"])
        self.world.require_bot_permission(guild, Permission.MANAGE_GUILD)
        return json_response(
            {"code": guild.vanity_code, "uses": guild.vanity_uses if guild.vanity_code else 0}
        )

    async def list_members(self, request: web.Request) -> web.StreamResponse:
        guild = self.world.guild(request.match_info["guild_id"])
        if not self.gateway.privileged_intents_enabled:
            raise DiscordAPIError(403, "Missing Access", 50001)
        limit = _int_or_none(request.query.get("limit", "1"))
        after = _int_or_none(request.query.get("after", "0"))
        if limit is None or after is None or not 1 <= limit <= 1000:
            raise DiscordAPIError(400, "Invalid Form Body", 50035)
        return json_response(
            [payloads.member(m) for m in self.world.list_members(guild, limit=limit, after=after)]
        )

    async def get_member(self, request: web.Request) -> web.StreamResponse:
        member = self.world.member(request.match_info["guild_id"], request.match_info["user_id"])
        return json_response(payloads.member(member))

    async def get_invite(self, request: web.Request) -> web.StreamResponse:
        invite = self.world.invites.get(request.match_info["code"])
        if invite is None or invite.expired(self.world.now()):
            raise DiscordAPIError(404, "Unknown Invite", 10006)
        guild = self.world.guild(invite.guild_id)
        inviter = self.world.users.get(invite.inviter_id or 0)
        # The public invite lookup carries no usage counters.
        return json_response(payloads.invite(invite, guild, inviter, with_uses=False))

    async def delete_invite(self, request: web.Request) -> web.StreamResponse:
        code = request.match_info["code"]
        invite = self.world.invites.get(code)
        if invite is not None:
            self.world.require_bot_permission(self.world.guild(invite.guild_id), Permission.MANAGE_CHANNELS)
        deleted, events = self.world.delete_invite(code, by=self.world.bot_user)
        self.gateway.dispatch(events)
        return json_response(
            payloads.invite(deleted, self.world.guild(deleted.guild_id), None, with_uses=False)
        )

    # -- channels and messages ----------------------------------------------------------------------

    async def get_channel(self, request: web.Request) -> web.StreamResponse:
        return json_response(payloads.channel(self.world.channel(request.match_info["channel_id"])))

    async def post_message(self, request: web.Request) -> web.StreamResponse:
        body, files = await read_body(request)
        msg, events = self.world.post_channel_message(
            request.match_info["channel_id"], self.world.bot_user, body, files
        )
        self.gateway.dispatch(events)
        return json_response(self.world.message_payload(msg))

    async def get_channel_message(self, request: web.Request) -> web.StreamResponse:
        msg = self.world.messages.get(int(request.match_info["message_id"]))
        if msg is None or msg.deleted or str(msg.channel_id) != request.match_info["channel_id"]:
            raise DiscordAPIError(404, "Unknown Message", 10008)
        return json_response(self.world.message_payload(msg))

    async def attachment_bytes(self, request: web.Request) -> web.StreamResponse:
        attachment = self.world.attachments.get(_int_or_none(request.match_info["attachment_id"]) or 0)
        if attachment is None:
            return web.Response(status=404, text="no such attachment")
        content_type = attachment.file.content_type or "application/octet-stream"
        return web.Response(body=attachment.data, headers={"Content-Type": content_type})

    # -- interaction answers ------------------------------------------------------------------------

    async def interaction_callback(self, request: web.Request) -> web.StreamResponse:
        body, files = await read_body(request)
        interaction = self.desk.callback(
            int(request.match_info["interaction_id"]), request.match_info["token"], body, files
        )
        if request.query.get("with_response") in ("true", "1", "True"):
            answer = interaction.answers[-1]
            resource: dict[str, Any] = {"type": answer.callback_type}
            if answer.message is not None:
                resource["message"] = self.world.message_payload(answer.message)
            callback = {
                "id": str(interaction.id),
                "type": interaction.type,
                "response_message_loading": False,
            }
            return json_response({"interaction": callback, "resource": resource})
        return web.Response(status=204)

    def _webhook(self, request: web.Request) -> tuple[int, str]:
        app_id = _int_or_none(request.match_info["app_id"])
        return (app_id if app_id is not None else -1), request.match_info["token"]

    async def webhook_followup(self, request: web.Request) -> web.StreamResponse:
        body, files = await read_body(request)
        _, message = self.desk.followup(*self._webhook(request), body, files)
        return json_response(self.world.message_payload(message))

    async def webhook_get_message(self, request: web.Request) -> web.StreamResponse:
        message = self.desk.get_message(*self._webhook(request), request.match_info["message_id"])
        return json_response(self.world.message_payload(message))

    async def webhook_edit_message(self, request: web.Request) -> web.StreamResponse:
        body, files = await read_body(request)
        _, message = self.desk.edit(*self._webhook(request), request.match_info["message_id"], body, files)
        return json_response(self.world.message_payload(message))

    async def webhook_delete_message(self, request: web.Request) -> web.StreamResponse:
        self.desk.delete_message(*self._webhook(request), request.match_info["message_id"])
        return web.Response(status=204)
