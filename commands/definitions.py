"""The slash commands' shapes (names, options, permissions), built as interactions.py objects around the
handlers of a `StaffCommands`. Built afresh for each client: the library binds a command object to one
client, and the adapter starts a new client after a failed reconnect."""

from __future__ import annotations

import re
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from interactions import (
    ComponentCommand,
    ContextType,
    OptionType,
    Permissions,
    SlashCommand,
    SlashCommandChoice,
    SlashCommandOption,
)

from commands import options, paging
from service.settle import REASON_MAX

if TYPE_CHECKING:
    from commands.staff import StaffCommands

#: Discord hides the commands from members without it; the handlers check it again (servers can override).
STAFF_PERMISSION = Permissions.MANAGE_GUILD
_DATE = "YYYY-MM-DD or ISO 8601 (UTC unless it says otherwise)"

Handler = Callable[[Any], Coroutine[Any, Any, None]]


def _option(name: str, kind: OptionType, description: str, *, required: bool = False, **extra: Any) -> Any:
    return SlashCommandOption(name=name, type=kind, description=description, required=required, **extra)


def _slash(name: str, description: str, handler: Handler, *opts: Any, **subcommand: Any) -> SlashCommand:
    return SlashCommand(
        name=name,
        description=description,
        options=list(opts),
        callback=handler,
        default_member_permissions=STAFF_PERMISSION,
        contexts=[ContextType.GUILD],  # guild only: never in DMs
        **subcommand,
    )


def build(staff: StaffCommands) -> list[Any]:
    user = OptionType.USER
    text = OptionType.STRING

    def staff_ib(sub: str, description: str, handler: Handler, *opts: Any) -> SlashCommand:
        return _slash(
            "staff_ib",
            "Staff members' broker IB links and codes",
            handler,
            *opts,
            sub_cmd_name=sub,
            sub_cmd_description=description,
        )

    return [
        _slash(
            "lookup_user_invite",
            "Which invite and staff member brought a member in",
            staff.lookup_user_invite,
            _option("user", user, "The member (or someone who has left)", required=True),
        ),
        _slash(
            "view_invite_logs",
            "Recorded joins, newest first",
            staff.view_invite_logs,
            _option("user_id", text, "Only this user id", max_length=40),
            _option("invite_code", text, "Only joins through this invite code", max_length=100),
            _option("staff", user, "Only joins credited to this staff member"),
            _option("since", text, f"Joins from this time on: {_DATE}", max_length=40),
        ),
        _slash(
            "export_invite_logs",
            "Download the join log as a file",
            staff.export_invite_logs,
            _option(
                "format",
                text,
                "csv (opens in Excel) or jsonl; csv if left out",
                choices=[SlashCommandChoice(name=f, value=f) for f in options.EXPORT_FORMATS],
            ),
            _option("since", text, f"From (inclusive): {_DATE}", max_length=40),
            _option("until", text, f"Until (a bare day counts whole): {_DATE}", max_length=40),
        ),
        _slash(
            "sync_member_invites",
            "Compare Discord's invite uses with the ledger's join counts",
            staff.sync_member_invites,
        ),
        staff_ib(
            "set",
            "Set a staff member's IB link and code",
            staff.staff_ib_set,
            _option("staff", user, "The staff member", required=True),
            _option("ib_link", text, "The IB link (https://…)", required=True, max_length=512),
            _option("ib_code", text, "The IB code (letters, digits, - _ .)", required=True, max_length=64),
        ),
        staff_ib(
            "show",
            "Show one staff member's IB profile, or all",
            staff.staff_ib_show,
            _option("staff", user, "The staff member (all if left out)"),
        ),
        staff_ib(
            "remove",
            "Remove a staff member's IB profile",
            staff.staff_ib_remove,
            _option("staff", user, "The staff member", required=True),
        ),
        _slash(
            "settle_join",
            "Settle which invite an ambiguous join used, once you know (the reason stays on record)",
            staff.settle_join,
            _option("user", user, "The member whose join to settle", required=True),
            _option(
                "invite_code",
                text,
                "The invite they used (one of the join's candidates)",
                required=True,
                max_length=100,
            ),
            _option(
                "reason",
                text,
                "How you know: what the member showed, who confirmed it",
                required=True,
                max_length=REASON_MAX,
            ),
            _option(
                "join_lsn",
                OptionType.INTEGER,
                "Which of their joins (its LSN); the latest if left out",
                min_value=1,
            ),
        ),
        _slash(
            "erase_user_data",
            "Erase a member's personal data from the ledger (Discord's developer terms, on request)",
            staff.erase_user_data,
            _option("user", user, "The member (or someone who has left)", required=True),
            _option(
                "confirm", text, "Type ERASE to confirm: this cannot be undone", required=True, max_length=10
            ),
        ),
        _slash(
            "ledger_status",
            "Durable, applied and backed-up positions of the ledger",
            staff.ledger_status,
        ),
        ComponentCommand(
            name=f"ComponentCallback::{paging.PREFIX}",
            callback=staff.turn_page,
            listeners=[re.compile(rf"^{paging.PREFIX}:")],
        ),
    ]
