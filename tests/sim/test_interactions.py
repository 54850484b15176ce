"""Interaction payloads and the recording of answers, without sockets (the desk is pure)."""

from __future__ import annotations

import pytest

from sim.discord_constants import OptionType, Permission
from sim.errors import DiscordAPIError
from sim.interactions import LOADING_FLAG, InteractionDesk
from sim.model import StoredFile
from sim.world import SimWorld

LEDGER = {
    "name": "ledger",
    "description": "invite ledger",
    "options": [
        {
            "name": "lookup",
            "type": OptionType.SUB_COMMAND,
            "description": "look someone up",
            "options": [
                {"name": "user", "type": OptionType.USER, "description": "who", "required": True},
                {"name": "limit", "type": OptionType.INTEGER, "description": "how many"},
            ],
        }
    ],
}


@pytest.fixture
def world() -> SimWorld:
    return SimWorld()


def test_invoke_builds_a_typed_payload_with_resolved_users_and_permissions(world: SimWorld) -> None:
    guild, _ = world.add_guild("g")
    world.commands.put(guild.id, [LEDGER])
    staff = world.add_user("staff")
    world.add_member(guild, staff, permissions=Permission.MANAGE_GUILD)
    member, gone = world.add_user("member"), world.add_user("gone")
    world.join(guild, member)
    desk = InteractionDesk(world)

    interaction, [event] = desk.invoke(guild, staff, "ledger lookup", {"user": member, "limit": "5"})

    payload = event.data
    assert event.name == "INTERACTION_CREATE" and payload is interaction.payload
    assert (payload["type"], payload["guild_id"], payload["token"]) == (2, str(guild.id), interaction.token)
    assert payload["channel_id"] == str(guild.system_channel_id)
    assert payload["member"]["user"]["id"] == str(staff.id)
    assert payload["member"]["permissions"] == str(Permission.MANAGE_GUILD)
    assert payload["app_permissions"] == str(guild.bot_permissions)
    data = payload["data"]
    assert data["id"] == world.commands.find(guild.id, "ledger")["id"] and data["guild_id"] == str(guild.id)
    [sub] = data["options"]
    assert sub["name"] == "lookup" and sub["type"] == OptionType.SUB_COMMAND
    assert sub["options"] == [
        {"name": "user", "type": OptionType.USER, "value": str(member.id)},
        {"name": "limit", "type": OptionType.INTEGER, "value": 5},
    ]
    assert data["resolved"]["users"][str(member.id)]["username"] == "member"
    assert "user" not in data["resolved"]["members"][str(member.id)]

    # Someone who left is resolved as a user only; the owner gets every permission.
    _, [event] = desk.invoke(guild, guild.owner_id, "ledger lookup", {"user": gone, "limit": None})
    assert "members" not in event.data["data"]["resolved"]
    assert event.data["member"]["permissions"] == str(Permission.ALL)


def test_invoke_refuses_what_discord_would_not_send(world: SimWorld) -> None:
    guild, _ = world.add_guild("g")
    world.commands.put(None, [LEDGER])
    desk = InteractionDesk(world)
    with pytest.raises(KeyError, match="no options"):
        desk.invoke(guild, guild.owner_id, "ledger lookup", {"user": guild.owner_id, "bogus": 1})
    with pytest.raises(ValueError, match="needs options"):
        desk.invoke(guild, guild.owner_id, "ledger lookup", {})
    with pytest.raises(KeyError, match="no subcommand"):
        desk.invoke(guild, guild.owner_id, "ledger nope")
    with pytest.raises(ValueError, match="not a member"):
        desk.invoke(guild, world.add_user("outsider"), "ledger lookup", {"user": guild.owner_id})


def test_deferral_follow_ups_edits_and_deletes_are_recorded(world: SimWorld) -> None:
    guild, _ = world.add_guild("g")
    world.commands.put(None, [{"name": "export", "description": "csv"}])
    desk = InteractionDesk(world, ack_timeout_s=None)
    interaction, _ = desk.invoke(guild, guild.owner_id, "export")
    app, token = world.application_id, interaction.token

    desk.callback(interaction.id, token, {"type": 5, "data": {"flags": 64}}, [])
    assert interaction.deferred and interaction.original is not None
    assert interaction.original.flags & LOADING_FLAG and interaction.original.ephemeral
    csv = StoredFile("joins.csv", "text/csv", b"a,b\n")
    _, filled = desk.followup(app, token, {"content": "here", "flags": 0}, [csv])
    assert filled is interaction.original and not filled.flags & LOADING_FLAG and filled.ephemeral
    _, extra = desk.followup(app, token, {"content": "one more"}, [])
    _, edited = desk.edit(app, token, "@original", {"content": "here (edited)", "attachments": []}, [])
    assert edited.attachments == [] and edited.edited_at is not None
    desk.delete_message(app, token, str(extra.id))
    assert [m.content for m in interaction.messages] == ["here (edited)"]
    assert [a.kind for a in interaction.answers] == ["callback", "followup", "followup", "edit", "delete"]
    with pytest.raises(DiscordAPIError) as unknown:
        desk.get_message(app, token, str(extra.id))
    assert unknown.value.status == 404


def test_a_click_on_a_button_updates_the_message_in_place(world: SimWorld) -> None:
    guild, _ = world.add_guild("g")
    world.commands.put(None, [{"name": "logs", "description": "pages"}])
    desk = InteractionDesk(world, ack_timeout_s=None)
    command, _ = desk.invoke(guild, guild.owner_id, "logs")
    button = {"type": 1, "components": [{"type": 2, "style": 1, "label": "Next", "custom_id": "page:2"}]}
    desk.callback(
        command.id, command.token, {"type": 4, "data": {"content": "page 1", "components": [button]}}, []
    )
    page = command.original
    assert page is not None
    with pytest.raises(KeyError, match="no component 'page:9'"):
        desk.click(page, "page:9", guild.owner_id)

    click, [event] = desk.click(page, "page:2", guild.owner_id)
    assert event.data["type"] == 3 and event.data["data"] == {"custom_id": "page:2", "component_type": 2}
    assert event.data["message"]["id"] == str(page.id)
    desk.callback(click.id, click.token, {"type": 6}, [])
    desk.edit(world.application_id, click.token, "@original", {"content": "page 2", "components": []}, [])
    assert (page.content, page.components) == ("page 2", [])
