"""Tests about the code base itself: command names, permissions, descriptions, `.env.example`.

They walk the command tree of the real bot after every extension has loaded, so a command
added later is held to the same rules without anyone listing it here.
"""

from __future__ import annotations

import ast
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import discord
import pytest
from discord import AppCommandType, app_commands
from discord.ext import commands

from bot.settings import Settings, settings_env_names
from cogs.admin._cog import OPEN_TO_ALL
from testkit.e2e import Harness
from testkit.media_factory import MediaFiles

REPO = Path(__file__).resolve().parent.parent
ENV_EXAMPLE = REPO / ".env.example"
#: Discord shows this when a command or option has no description of its own.
NO_DESCRIPTION = "…"
#: Commands every member may use; anything else must be for moderators (see below).
PUBLIC_COMMANDS = {"check", "Check for deepfake", "help"}

AnyCommand = app_commands.Command[Any, ..., Any] | app_commands.Group | app_commands.ContextMenu


def _tree(sw: Harness) -> list[AnyCommand]:
    """Every command and group in the bot's tree, context menus included, depth first."""
    found: list[AnyCommand] = []
    for kind in AppCommandType:
        for command in sw.bot.tree.get_commands(type=kind):
            found.append(command)
            if isinstance(command, app_commands.Group):
                found.extend(command.walk_commands())
    return found


def _kind(command: AnyCommand) -> str:
    return command.type.name if isinstance(command, app_commands.ContextMenu) else "chat_input"


def _declared(bot: commands.Bot) -> Iterator[tuple[str, str]]:
    """(kind, qualified name) of every slash command as the cogs declare them.

    A `GroupCog` keeps its subcommands in a dict keyed by name, so a second subcommand with
    the same name silently replaces the first in the tree; the cog's own list still has both.
    """
    for cog in bot.cogs.values():
        for command in cog.__cog_app_commands__:
            yield "chat_input", command.qualified_name
            if isinstance(command, app_commands.Group):
                for child in command.walk_commands():
                    yield "chat_input", child.qualified_name


def test_no_two_commands_share_a_name(spoofwatch: Harness) -> None:
    """No two commands of one kind (slash or context menu) have the same full name."""
    in_tree = Counter((_kind(c), c.qualified_name) for c in _tree(spoofwatch))
    declared = Counter(_declared(spoofwatch.bot))
    twice = [name for names in (in_tree, declared) for name, n in names.items() if n > 1]
    assert twice == []
    assert set(declared) <= set(in_tree)


def _required(
    command: app_commands.Command[Any, ..., Any], sw: Harness, media: MediaFiles
) -> dict[str, Any]:
    """A valid value for each required option, so that only the permission check can refuse."""
    emu = sw.emu
    values: dict[str, Any] = {}
    for p in command.parameters:
        if not p.required:
            continue
        kind = p.type
        if p.choices:
            values[p.name] = p.choices[0].value
        elif kind is discord.AppCommandOptionType.boolean:
            values[p.name] = True
        elif kind is discord.AppCommandOptionType.integer:
            values[p.name] = int(p.min_value if p.min_value is not None else 1)
        elif kind is discord.AppCommandOptionType.number:
            values[p.name] = float(p.min_value if p.min_value is not None else 0.5)
        elif kind is discord.AppCommandOptionType.string:
            values[p.name] = "x" * int(p.min_value or 1)
        elif kind in (discord.AppCommandOptionType.user, discord.AppCommandOptionType.mentionable):
            values[p.name] = emu.member
        elif kind is discord.AppCommandOptionType.channel:
            values[p.name] = emu.text_channel
        elif kind is discord.AppCommandOptionType.attachment:
            values[p.name] = emu.attachment(media.tone_wav, "t.wav", "audio/wav")
        elif kind is discord.AppCommandOptionType.role:
            values[p.name] = emu.guild.everyone_role
        else:
            raise AssertionError(f"teach _required about {kind} ({command.qualified_name})")
    return values


def _default_permissions(command: AnyCommand) -> discord.Permissions | None:
    """The default permissions Discord applies: the root command's (subcommands inherit)."""
    root: Any = command
    while getattr(root, "parent", None) is not None:
        root = root.parent
    return root.default_permissions


async def test_every_moderator_command_refuses_a_plain_member(
    spoofwatch: Harness, media: MediaFiles
) -> None:
    """Each command with default permissions is refused to a plain member by the runtime check.

    The emulator delivers the interaction whatever the defaults say, as Discord does once a
    server admin overrides them; the bot itself must refuse. Commands without defaults are
    the public ones, and only those listed in PUBLIC_COMMANDS may be public; under a gated
    group, only OPEN_TO_ALL (`/spoofwatch help`) answers whoever reaches it.
    """
    emu = spoofwatch.emu
    leaves = [
        c
        for c in _tree(spoofwatch)
        if isinstance(c, app_commands.Command | app_commands.ContextMenu)
    ]
    public = {c.qualified_name for c in leaves if _default_permissions(c) is None}
    moderated = [
        c
        for c in leaves
        if isinstance(c, app_commands.Command)
        and _default_permissions(c) is not None
        and c.qualified_name not in OPEN_TO_ALL
    ]
    not_refused = []
    for command in moderated:
        ix = await emu.invoke_slash(
            emu.text_channel,
            emu.member,
            command.qualified_name,
            _required(command, spoofwatch, media),
        )
        answer = await ix.wait_for_reply()
        if not (answer.ephemeral and answer.content.startswith("You need the")):
            not_refused.append((command.qualified_name, answer.content))
    assert (public, not_refused) == (PUBLIC_COMMANDS, [])


def test_every_command_and_option_is_described(spoofwatch: Harness) -> None:
    """Every slash command, group and option has a description of its own (not Discord's …)."""
    missing = []
    for command in _tree(spoofwatch):
        if isinstance(command, app_commands.ContextMenu):
            continue  # Discord gives context menus no description
        if command.description in ("", NO_DESCRIPTION):
            missing.append(command.qualified_name)
        if isinstance(command, app_commands.Command):
            missing += [
                f"{command.qualified_name} {p.name}"
                for p in command.parameters
                if p.description in ("", NO_DESCRIPTION)
            ]
    assert missing == [], missing


# --- .env.example ------------------------------------------------------------------------------


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No Spoofwatch variable from the developer's shell leaks into the parsed settings."""
    for name in settings_env_names().values():
        monkeypatch.delenv(name, raising=False)


def _example_names() -> set[str]:
    return set(re.findall(r"^([A-Z][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(), re.MULTILINE))


@pytest.mark.usefixtures("clean_environment")
def test_env_example_parses_into_settings() -> None:
    """`.env.example` as shipped is valid configuration, and its values are the defaults."""
    assert Settings(_env_file=ENV_EXAMPLE) == Settings(_env_file=None)  # type: ignore[call-arg]


def test_env_example_lists_every_setting() -> None:
    """Every operator setting has a line in `.env.example`, and every line is a setting."""
    assert _example_names() == set(settings_env_names().values())


def _imported_modules(path: Path) -> set[str]:
    """The dotted modules a module imports (absolute imports, anywhere in the module)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _imported_packages(path: Path) -> set[str]:
    """The top-level packages a module imports (absolute imports, anywhere in the module)."""
    return {name.split(".")[0] for name in _imported_modules(path)}


#: Who may not import whom: tests and benchmarks share the test kit, never each other, and
#: the kit serves both, so it imports neither.
FORBIDDEN_IMPORTS = {"tests": {"bench"}, "bench": {"tests"}, "testkit": {"tests", "bench"}}


@pytest.mark.parametrize("package", sorted(FORBIDDEN_IMPORTS))
def test_tests_and_benchmarks_share_only_the_test_kit(package: str) -> None:
    """Fails if a test imports a benchmark, a benchmark imports a test, or the test kit
    imports either (what they share belongs in `testkit/`)."""
    modules = sorted((REPO / package).rglob("*.py"))
    assert modules, f"no modules under {package}/"
    offenders = {
        f"{path.relative_to(REPO)} imports {sorted(found)}"
        for path in modules
        if (found := _imported_packages(path) & FORBIDDEN_IMPORTS[package])
    }
    assert not offenders, sorted(offenders)


#: The one core module allowed to reach into the Discord boundary: the command line's
#: entry point, which starts the bot.
ENTRY_POINT = REPO / "bot" / "__main__.py"


def test_core_modules_are_discord_free() -> None:
    """Fails if a module of `bot` outside `bot/discord_glue/` imports discord.py, or reaches
    into the boundary: scanning, media, detectors, storage, verdicts and settings must be
    usable (and testable) without Discord. Discord glue belongs in `bot/discord_glue/`."""
    glue = REPO / "bot" / "discord_glue"
    core = [p for p in sorted((REPO / "bot").rglob("*.py")) if glue not in p.parents]
    assert len(core) > 30, "the core modules were not found"
    offenders = set()
    for path in core:
        found = _imported_modules(path)
        if any(name.split(".")[0] == "discord" for name in found):
            offenders.add(f"{path.relative_to(REPO)} imports discord")
        if path != ENTRY_POINT and any(n.startswith("bot.discord_glue") for n in found):
            offenders.add(f"{path.relative_to(REPO)} imports the Discord boundary")
    assert not offenders, sorted(offenders)
