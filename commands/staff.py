"""The staff slash commands' handlers: `/lookup_user_invite`, `/view_invite_logs` (with page buttons),
`/export_invite_logs`, `/sync_member_invites`, `/staff_ib set|show|remove`, `/settle_join`,
`/erase_user_data`, `/ledger_status`.

Every answer is ephemeral and deferred first, so a slow query never loses the interaction (Discord forgets
one not acknowledged within 3 s). Discord shows the commands only to members with Manage Server
(`definitions.STAFF_PERMISSION`); each handler checks the permissions Discord sent with the interaction
again, since a server can override the default.

A handler never shows a stack trace: bad input gets a message saying what to type, a failure gets an
apology naming the interaction id, which is logged with the traceback.

The command objects are built afresh for every client (`install`), since the adapter starts a new client
after a failed reconnect; the state they keep (pagination) lives here, across clients.
"""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any

import anyio
import attrs
from interactions import (
    ActionRow,
    AllowedMentions,
    Button,
    ButtonStyle,
    Client,
    ComponentContext,
    Embed,
    File,
    Permissions,
    SlashContext,
)

from commands import definitions, options, paging, render
from commands.files import DISCORD_ATTACHMENT_LIMIT, GZIP_ABOVE, Attachment, cli_hint, package_export
from commands.options import BadInput
from commands.ports import DiscordPort, LedgerPort
from service.gateway import FetchError, RateLimited
from service.logs import log_event
from service.queries import LedgerBehind
from service.settle import SettleRefused, SettleRequest

log = logging.getLogger(__name__)


class Refused(Exception):
    """Not an interaction to answer (no guild, no permission); the message says why."""


@attrs.define
class Reply:
    content: str | None = None
    embeds: list[Embed] = attrs.field(factory=list)
    file: File | None = None
    components: list[ActionRow] = attrs.field(factory=list)

    def kwargs(self) -> dict[str, Any]:
        return {
            "content": self.content,
            "embeds": self.embeds or None,
            "file": self.file,
            "components": self.components or None,
            "allowed_mentions": AllowedMentions.none(),  # names and echoed input never ping anyone
        }


Answer = Callable[[Any, str], Awaitable[Reply]]


def apology(interaction_id: object) -> str:
    return (
        "Sorry, that failed on the bot's side and nothing was changed by this command. Please try again; "
        f"if it keeps failing, give the bot's operator this reference: interaction `{interaction_id}`."
    )


@attrs.define(eq=False)
class StaffCommands:
    ledger: LedgerPort
    discord: DiscordPort
    pages: paging.PageStore = attrs.field(factory=paging.PageStore)
    page_size: int = 10
    attachment_limit: int = DISCORD_ATTACHMENT_LIMIT
    gzip_above: int = GZIP_ABOVE
    failures: int = 0  # handlers that failed and apologised

    def install(self, client: Client) -> None:
        """Add the commands to `client` before it starts (the adapter calls this for every client)."""
        for command in definitions.build(self):
            client.add_command(command)

    # --- the common frame ----------------------------------------------------------------------------

    async def _answer(self, ctx: SlashContext, name: str, answer: Answer) -> None:
        try:
            await ctx.defer(ephemeral=True)
        except Exception:  # the interaction is gone (over 3 s, or unknown): nothing can be said to anyone
            log_event(log, "command_defer_failed", level=logging.WARNING, command=name, interaction=ctx.id)
            return
        try:
            reply = await answer(ctx, self._check(ctx))
        except (BadInput, Refused, SettleRefused) as exc:
            reply = Reply(content=f"⚠️ {exc}")
        except LedgerBehind:
            reply = Reply(content="The ledger is still applying the latest records; try again shortly.")
        except Exception:
            self.failures += 1
            log_event(
                log, "command_failed", level=logging.ERROR, exc_info=True, command=name, interaction=ctx.id
            )
            reply = Reply(content=apology(ctx.id))
        try:
            await ctx.send(**reply.kwargs(), ephemeral=True)
        except Exception:
            log_event(log, "command_reply_failed", level=logging.ERROR, exc_info=True, interaction=ctx.id)

    @staticmethod
    def _check(ctx: SlashContext | ComponentContext) -> str:
        if ctx.guild_id is None:
            raise Refused("This command works in a server only.")
        granted = ctx.author_permissions
        if Permissions.MANAGE_GUILD not in granted and Permissions.ADMINISTRATOR not in granted:
            raise Refused("You need the Manage Server permission to use the invite ledger's commands.")
        return str(ctx.guild_id)

    # --- /lookup_user_invite -------------------------------------------------------------------------

    async def lookup_user_invite(self, ctx: SlashContext) -> None:
        await self._answer(ctx, "lookup_user_invite", self._lookup)

    async def _lookup(self, ctx: SlashContext, guild_id: str) -> Reply:
        user = ctx.kwargs.get("user")  # a Member, or a User once they have left
        if user is None:
            raise BadInput("Choose the member to look up.")
        result = await self.ledger.lookup_user(guild_id, str(user.id))
        if result is None:  # the façade may say "never seen" this way too
            return Reply(embeds=[render.not_found_embed(str(user.id))])
        return Reply(embeds=[render.lookup_embed(result)])

    # --- /view_invite_logs and its buttons -----------------------------------------------------------

    async def view_invite_logs(self, ctx: SlashContext) -> None:
        await self._answer(ctx, "view_invite_logs", self._first_page)

    async def _first_page(self, ctx: SlashContext, guild_id: str) -> Reply:
        filters: dict[str, Any] = {}
        labels: list[str] = []
        if (user_id := ctx.kwargs.get("user_id")) is not None:
            filters["user_id"] = options.snowflake(user_id)
            labels.append(f"user {filters['user_id']}")
        if (code := ctx.kwargs.get("invite_code")) is not None:
            filters["invite_code"] = options.invite_code(code)
            labels.append(f"code {filters['invite_code']}")
        if (staff := ctx.kwargs.get("staff")) is not None:
            filters["staff_id"] = str(staff.id)
            labels.append(f"staff {staff.username}")
        if (since := ctx.kwargs.get("since")) is not None:
            filters["since"] = options.when(since)
            labels.append(f"since {filters['since']:%Y-%m-%d %H:%M} UTC")
        query = paging.LogQuery(guild_id, str(ctx.author.id), filters, tuple(labels))
        page = await self.ledger.join_logs(guild_id, limit=self.page_size, **filters)
        query.next_cursor = page.next_cursor
        if not page.entries and "invite_code" in filters:
            return Reply(
                content=f"No joins recorded through invite code `{filters['invite_code']}`: the ledger does "
                "not know that code, or nobody has joined through it yet (check the spelling)."
            )
        embed = render.log_page_embed(page, 1, query.labels)
        if page.next_cursor is None:
            return Reply(embeds=[embed])  # one page: no buttons, no state to keep
        key = self.pages.add(query)
        return Reply(embeds=[embed], components=[self._buttons(key, query)])

    @staticmethod
    def _buttons(key: str, query: paging.LogQuery) -> ActionRow:
        return ActionRow(
            Button(
                style=ButtonStyle.SECONDARY,
                label="Previous",
                custom_id=paging.custom_id(key, paging.PREVIOUS),
                disabled=query.page_number <= 1,
            ),
            Button(
                style=ButtonStyle.PRIMARY,
                label="Next",
                custom_id=paging.custom_id(key, paging.NEXT),
                disabled=query.next_cursor is None,
            ),
        )

    async def turn_page(self, ctx: ComponentContext) -> None:
        try:
            parsed = paging.parse_custom_id(ctx.custom_id)
            query = None if parsed is None else self.pages.get(parsed[0])
            if parsed is None or query is None:
                await ctx.send("This list has expired; run `/view_invite_logs` again.", ephemeral=True)
                return
            key, direction = parsed
            self._check(ctx)
            if str(ctx.author.id) != query.owner_id:
                raise Refused("Only the person who ran this `/view_invite_logs` can turn its pages.")
            await ctx.defer(edit_origin=True)
            if direction == paging.NEXT and query.next_cursor is not None:
                query.befores.append(query.next_cursor)
            elif direction == paging.PREVIOUS and query.page_number > 1:
                query.befores.pop()
            page = await self.ledger.join_logs(
                query.guild_id, limit=self.page_size, before=query.befores[-1], **query.filters
            )
            query.next_cursor = page.next_cursor
            embed = render.log_page_embed(page, query.page_number, query.labels)
            await ctx.edit_origin(embeds=[embed], components=[self._buttons(key, query)])
        except Refused as exc:
            await ctx.send(f"⚠️ {exc}", ephemeral=True)
        except Exception:
            self.failures += 1
            log_event(log, "page_turn_failed", level=logging.ERROR, exc_info=True, interaction=ctx.id)
            await ctx.send(apology(ctx.id), ephemeral=True)

    # --- /export_invite_logs -------------------------------------------------------------------------

    async def export_invite_logs(self, ctx: SlashContext) -> None:
        await self._answer(ctx, "export_invite_logs", self._export)

    async def _export(self, ctx: SlashContext, guild_id: str) -> Reply:
        fmt = options.export_format(ctx.kwargs.get("format"))
        since, until = options.date_range(ctx.kwargs.get("since"), ctx.kwargs.get("until"))
        export = await self.ledger.export(guild_id, fmt, since, until)
        try:
            if export.rows == 0:
                return Reply(content="No joins recorded in that range: there is nothing to export.")
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
            packed = await anyio.to_thread.run_sync(
                partial(
                    package_export,
                    export.path,
                    f"invite-logs-{guild_id}-{stamp}.{fmt}",
                    limit=self.attachment_limit,
                    gzip_above=self.gzip_above,
                )
            )
        finally:
            await anyio.to_thread.run_sync(partial(export.path.unlink, missing_ok=True))
        if not isinstance(packed, Attachment):
            return Reply(
                content=f"The export holds {export.rows} joins: {render.size_text(packed.size)} even "
                f"gzipped, over Discord's attachment limit of {render.size_text(packed.limit)}. "
                "Run this on the bot's server instead:\n"
                f"`{cli_hint(guild_id, fmt, since, until)}`"
            )
        note = " (gzipped: it is large)" if packed.gzipped else ""
        return Reply(
            content=f"{export.rows} joins as {fmt.upper()}{note}.",
            file=File(io.BytesIO(packed.data), file_name=packed.file_name),
        )

    # --- /sync_member_invites ------------------------------------------------------------------------

    async def sync_member_invites(self, ctx: SlashContext) -> None:
        await self._answer(ctx, "sync_member_invites", self._sync)

    async def _sync(self, ctx: SlashContext, guild_id: str) -> Reply:
        try:
            invites = await self.discord.fetch_invites(guild_id)
        except RateLimited as exc:
            wait = math.ceil(exc.retry_after)
            return Reply(content=f"Discord is rate limiting invite reads; try again in {wait} s.")
        except FetchError as exc:
            return Reply(
                content=f"Could not read this server's invites from Discord ({exc}). "
                "The bot needs the Manage Server permission to see invite uses."
            )
        uses = {invite.code: invite.uses for invite in invites.invites}
        if invites.vanity_code and invites.vanity_uses is not None:
            uses[invites.vanity_code] = invites.vanity_uses
        rows = await self.ledger.invite_comparison(guild_id, uses)
        return Reply(embeds=[render.comparison_embed(rows)])

    # --- /staff_ib -----------------------------------------------------------------------------------

    async def staff_ib_set(self, ctx: SlashContext) -> None:
        await self._answer(ctx, "staff_ib set", self._ib_set)

    async def _ib_set(self, ctx: SlashContext, guild_id: str) -> Reply:
        staff = ctx.kwargs.get("staff")
        if staff is None:
            raise BadInput("Choose the staff member.")
        link = options.ib_link(str(ctx.kwargs.get("ib_link", "")))
        code = options.ib_code(str(ctx.kwargs.get("ib_code", "")))
        lsn = await self.ledger.set_staff_ib(
            guild_id, str(staff.id), staff.username, link, code, str(ctx.author.id)
        )
        return Reply(
            content=f"Saved the IB profile of {render.md(staff.username)} (<@{staff.id}>): {link} · "
            f"`{code}`. It is on disk in the log (LSN {lsn}) and shows with every join credited to them."
        )

    async def staff_ib_show(self, ctx: SlashContext) -> None:
        await self._answer(ctx, "staff_ib show", self._ib_show)

    async def _ib_show(self, ctx: SlashContext, guild_id: str) -> Reply:
        staff = ctx.kwargs.get("staff")
        if staff is None:
            everyone = await self.ledger.staff_profile(guild_id)
            return Reply(embeds=[render.staff_profiles_embed(list(everyone))])
        profile = await self.ledger.staff_profile(guild_id, str(staff.id))
        if profile is None:
            return Reply(content=f"{render.md(staff.username)} (<@{staff.id}>) has no IB profile.")
        return Reply(embeds=[render.staff_profiles_embed([profile])])

    async def staff_ib_remove(self, ctx: SlashContext) -> None:
        await self._answer(ctx, "staff_ib remove", self._ib_remove)

    async def _ib_remove(self, ctx: SlashContext, guild_id: str) -> Reply:
        staff = ctx.kwargs.get("staff")
        if staff is None:
            raise BadInput("Choose the staff member.")
        lsn = await self.ledger.remove_staff_ib(guild_id, str(staff.id), str(ctx.author.id))
        if lsn is None:
            return Reply(content=f"{render.md(staff.username)} (<@{staff.id}>) has no IB profile to remove.")
        return Reply(
            content=f"Removed the IB profile of {render.md(staff.username)} (<@{staff.id}>) (LSN {lsn}). "
            "Their earlier joins stay credited to them, without an IB link."
        )

    # --- /settle_join --------------------------------------------------------------------------------

    async def settle_join(self, ctx: SlashContext) -> None:
        await self._answer(ctx, "settle_join", self._settle)

    async def _settle(self, ctx: SlashContext, guild_id: str) -> Reply:
        user = ctx.kwargs.get("user")
        if user is None:
            raise BadInput("Choose the member whose join to settle (someone who has left can be chosen too).")
        lsn = ctx.kwargs.get("join_lsn")
        request = SettleRequest(
            guild_id=guild_id,
            user_id=str(user.id),
            invite_code=options.invite_code(str(ctx.kwargs.get("invite_code", ""))),
            settled_by=str(ctx.author.id),
            settled_by_name=ctx.author.username,
            reason=str(ctx.kwargs.get("reason", "")),
            join_lsn=None if lsn is None else int(lsn),
        )
        return Reply(content=render.settled_text(await self.ledger.settle_join(request)))

    # --- /erase_user_data ----------------------------------------------------------------------------

    async def erase_user_data(self, ctx: SlashContext) -> None:
        await self._answer(ctx, "erase_user_data", self._erase)

    async def _erase(self, ctx: SlashContext, guild_id: str) -> Reply:
        user = ctx.kwargs.get("user")
        if user is None:
            raise BadInput("Choose the member whose data to erase (someone who has left can be chosen too).")
        if ctx.kwargs.get("confirm") != "ERASE":
            raise BadInput(
                "Nothing erased. To erase, type `ERASE` in the `confirm` option: this cannot be undone."
            )
        lsn = await self.ledger.erase_user(guild_id, str(user.id), str(ctx.author.id))
        return Reply(
            content=f"Erased the personal data of <@{user.id}> (`{user.id}`) in this server (LSN {lsn}): "
            "names are blanked in the database and in every export; join counts per invite and staff "
            "member are kept. Copies of the write-ahead log (on disk and in backups) still hold the "
            "original records until they are deleted by hand."
        )

    # --- /ledger_status ------------------------------------------------------------------------------

    async def ledger_status(self, ctx: SlashContext) -> None:
        await self._answer(ctx, "ledger_status", self._status)

    async def _status(self, ctx: SlashContext, guild_id: str) -> Reply:
        return Reply(embeds=[render.status_embed(await self.ledger.status())])
