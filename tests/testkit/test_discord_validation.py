"""The emulator refuses what Discord refuses: each rule of validation.py, one bad body each.

A rule that accepted a bad body would let the bot ship a message or a command Discord rejects,
so each case here names the rule (and its source in validation.py) it pins down.
"""

from __future__ import annotations

import copy
from typing import Any

import discord
import pytest
from discord import app_commands
from discord.ext import commands

from testkit.discord_emulator import DiscordEmulator
from testkit.discord_emulator.validation import validate_callback, validate_message
from testkit.discord_emulator.validation_commands import validate_commands

JSON = dict[str, Any]


def _button(custom_id: str = "b", **extra: Any) -> JSON:
    return {"type": 2, "style": 1, "label": "ok", "custom_id": custom_id, **extra}


def _row(*children: JSON) -> JSON:
    return {"type": 1, "components": list(children)}


def _select(options: int = 2, **extra: Any) -> JSON:
    choices = [{"label": f"o{i}", "value": f"v{i}"} for i in range(options)]
    return {"type": 3, "custom_id": "s", "options": choices, **extra}


def _embed(**extra: Any) -> JSON:
    return {"title": "t", "fields": [{"name": "n", "value": "v"}], **extra}


# (case, message body, a path Discord names in its errors)
BAD_MESSAGES: list[tuple[str, JSON, str]] = [
    ("content over 2000", {"content": "x" * 2001}, "content"),
    ("11 embeds", {"embeds": [_embed() for _ in range(11)]}, "embeds"),
    ("title over 256", {"embeds": [_embed(title="x" * 257)]}, "title"),
    ("description over 4096", {"embeds": [_embed(description="x" * 4097)]}, "description"),
    ("26 fields", {"embeds": [_embed(fields=[{"name": "n", "value": "v"}] * 26)]}, "fields"),
    ("empty field value", {"embeds": [_embed(fields=[{"name": "n", "value": ""}])]}, "value"),
    ("blank field name", {"embeds": [_embed(fields=[{"name": " ", "value": "v"}])]}, "name"),
    (
        "field value over 1024",
        {"embeds": [_embed(fields=[{"name": "n", "value": "x" * 1025}])]},
        "value",
    ),
    ("footer over 2048", {"embeds": [_embed(footer={"text": "x" * 2049})]}, "footer"),
    ("author over 256", {"embeds": [_embed(author={"name": "x" * 257})]}, "author"),
    (
        "embeds over 6000 in all",
        {"embeds": [_embed(description="x" * 4000), _embed(description="x" * 4000)]},
        "embeds",
    ),
    ("6 rows", {"components": [_row(_button(str(i))) for i in range(6)]}, "components"),
    ("6 buttons in a row", {"components": [_row(*(_button(str(i)) for i in range(6)))]}, "0"),
    ("empty row", {"components": [_row()]}, "0"),
    ("custom_id over 100", {"components": [_row(_button("x" * 101))]}, "custom_id"),
    ("duplicate custom_id", {"components": [_row(_button("a"), _button("a"))]}, "custom_id"),
    ("label over 80", {"components": [_row(_button(label="x" * 81))]}, "label"),
    ("button without custom_id", {"components": [_row(_button(""))]}, "custom_id"),
    (
        "link button with custom_id",
        {"components": [_row(_button(style=5, url="https://example.com"))]},
        "custom_id",
    ),
    ("select beside a button", {"components": [_row(_select(), _button())]}, "0"),
    ("26 select options", {"components": [_row(_select(26))]}, "options"),
    ("select without options", {"components": [_row(_select(0))]}, "options"),
    ("placeholder over 150", {"components": [_row(_select(placeholder="x" * 151))]}, "placeholder"),
    ("unknown mention type", {"content": "x", "allowed_mentions": {"parse": ["here"]}}, "parse"),
    (
        "parse users and a users list",
        {"content": "x", "allowed_mentions": {"parse": ["users"], "users": ["1"]}},
        "allowed_mentions",
    ),
    (
        "101 allowed users",
        {"content": "x", "allowed_mentions": {"users": [str(i) for i in range(101)]}},
        "users",
    ),
]


def _paths(errors: JSON, prefix: str = "") -> list[str]:
    found = []
    for key, node in errors.items():
        if key == "_errors":
            found.append(prefix)
        elif isinstance(node, dict):
            found += _paths(node, f"{prefix}.{key}" if prefix else key)
    return found


@pytest.mark.parametrize(
    ("case", "body", "where"), BAD_MESSAGES, ids=[c for c, _, _ in BAD_MESSAGES]
)
def test_a_message_discord_refuses_is_refused(case: str, body: JSON, where: str) -> None:
    """Fails if the emulator accepts a message body that breaks one of Discord's rules."""
    error = validate_message(body)
    assert error is not None and error["code"] == 50035, case
    assert any(where in path.split(".") for path in _paths(error["errors"])), error


def test_a_message_at_every_limit_is_accepted() -> None:
    """Fails if a rule is off by one: a body exactly at Discord's limits must pass."""
    body = {
        "content": "x" * 2000,
        "embeds": [
            {
                "title": "x" * 256,
                "description": "x" * 1000,
                "fields": [{"name": "n" * 256, "value": "v" * 1024}] * 2,
                "footer": {"text": "f" * 100},
            }
        ],
        "components": [_row(*(_button(f"{r}-{i}") for i in range(5))) for r in range(4)]
        + [_row(_select(25, placeholder="p" * 150))],
        "allowed_mentions": {"parse": [], "users": ["1"], "replied_user": False},
    }
    assert validate_message(body) is None


def _command(**extra: Any) -> JSON:
    return {"type": 1, "name": "check", "description": "Check a file", **extra}


def _option(name: str, *, required: bool = False, **extra: Any) -> JSON:
    return {"type": 3, "name": name, "description": "d", "required": required, **extra}


BAD_COMMANDS: list[tuple[str, list[JSON]]] = [
    ("upper-case name", [_command(name="Check")]),
    ("name with a space", [_command(name="check file")]),
    ("name over 32", [_command(name="x" * 33)]),
    ("no description", [_command(description="")]),
    ("description over 100", [_command(description="x" * 101)]),
    ("26 options", [_command(options=[_option(f"o{i}") for i in range(26)])]),
    ("required after optional", [_command(options=[_option("a"), _option("b", required=True)])]),
    ("duplicate option", [_command(options=[_option("a"), _option("a")])]),
    (
        "26 choices",
        [
            _command(
                options=[
                    _option("a", choices=[{"name": f"c{i}", "value": f"{i}"} for i in range(26)])
                ]
            )
        ],
    ),
    (
        "choice value over 100",
        [_command(options=[_option("a", choices=[{"name": "c", "value": "x" * 101}])])],
    ),
    (
        "subcommand beside an option",
        [_command(options=[{"type": 1, "name": "s", "description": "d"}, _option("a")])],
    ),
    ("duplicate command", [_command(), _command()]),
    ("context menu with options", [{"type": 3, "name": "Check it", "options": [_option("a")]}]),
    (
        "over 8000 characters",
        [
            _command(
                options=[
                    {
                        "type": 1,
                        "name": f"s{i}",
                        "description": "x" * 100,
                        "options": [_option(f"o{j}", description="y" * 100) for j in range(4)],
                    }
                    for i in range(20)
                ]
            )
        ],
    ),
]


@pytest.mark.parametrize(("case", "body"), BAD_COMMANDS, ids=[c for c, _ in BAD_COMMANDS])
def test_a_command_discord_refuses_is_refused(case: str, body: list[JSON]) -> None:
    """Fails if the emulator registers a command that breaks one of Discord's rules."""
    error = validate_commands(body)
    assert error is not None and error["code"] == 50035, case


def test_a_command_at_every_limit_is_accepted() -> None:
    """Fails if a registration rule is off by one or refuses what Discord allows."""
    choices = [{"name": "c" * 100, "value": f"{i}"} for i in range(25)]
    body = [
        _command(
            name="x" * 32,
            description="d" * 100,
            options=[_option("a", required=True), _option("b", choices=choices)],
        ),
        {"type": 3, "name": "Check for deepfake", "description": ""},
    ]
    assert validate_commands(copy.deepcopy(body)) is None


async def test_a_refused_body_fails_the_test_that_sent_it(emulator: DiscordEmulator) -> None:
    """Fails if a refused body can pass unnoticed: it must be recorded for the fixture to fail."""
    bot = commands.Bot(command_prefix="!", intents=discord.Intents.default())

    @bot.tree.command(name="long", description="Says too much")
    async def long(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("x" * 2001)

    async with emulator.run(bot):
        await bot.tree.sync()
        await emulator.invoke_slash(emulator.text_channel, emulator.member, "long", {})
        await emulator.wait_for(lambda: emulator.refusals)
    [refusal] = emulator.refusals
    assert refusal["code"] == 50035 and "content" in refusal["errors"]
    emulator.refusals_expected = True  # this test sent it on purpose


async def test_a_command_sync_discord_refuses_raises(emulator: DiscordEmulator) -> None:
    """Fails if syncing a command Discord refuses succeeds against the emulator."""
    bot = commands.Bot(command_prefix="!", intents=discord.Intents.default())

    @bot.tree.command(name="pick", description="Order matters")
    @app_commands.describe(first="optional", second="required")
    async def pick(interaction: discord.Interaction, second: str, first: str = "") -> None:
        await interaction.response.send_message("ok")

    payload = pick.to_dict(bot.tree)
    payload["options"].reverse()
    async with emulator.run(bot):
        with pytest.raises(discord.HTTPException) as raised:
            await bot.http.bulk_upsert_global_commands(emulator.application_id, [payload])
    assert raised.value.code == 50035
    emulator.refusals_expected = True


@pytest.mark.parametrize(
    ("case", "body"),
    [
        ("unknown type", {"type": 3}),
        ("defer with a flag besides ephemeral", {"type": 5, "data": {"flags": 64 | 4}}),
        ("reply with a flag a bot cannot set", {"type": 4, "data": {"flags": 1 << 7}}),
    ],
)
def test_a_callback_discord_refuses_is_refused(case: str, body: JSON) -> None:
    """Fails if the emulator accepts an interaction callback type or flag Discord refuses."""
    error = validate_callback(body)
    assert error is not None and error["code"] == 50035, case


def test_the_callbacks_a_bot_sends_are_accepted() -> None:
    """Fails if a private defer, a private reply or a component update is refused."""
    for body in (
        {"type": 5, "data": {"flags": 64}},
        {"type": 4, "data": {"flags": 64}},
        {"type": 7},
    ):
        assert validate_callback(body) is None, body
