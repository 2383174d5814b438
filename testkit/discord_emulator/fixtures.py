"""pytest fixtures: a running emulator with a small default guild, discord.py pointed at it.

Imported by ``tests/conftest.py``. The default scene, available as attributes of the emulator:

- ``emu.guild`` "Test Guild"; ``emu.category`` "Community" holding ``emu.text_channel``
  "general" and ``emu.voice_channel`` "Lounge"; ``emu.thread`` "general-thread" under general;
- ``emu.member`` (plain), ``emu.moderator`` (Manage Messages, Moderate Members), ``emu.admin``
  (also Manage Guild, Manage Channels); ``emu.bot_user`` is the bot.

A test during which the emulator refused a body as Discord would (``emu.refusals``, see
validation.py) fails at teardown, unless it set ``emu.refusals_expected``.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from .emulator import DiscordEmulator


def build_default_scene(emu: DiscordEmulator) -> DiscordEmulator:
    """Create the default guild, channels and members and store them on ``emu``."""
    emu.guild = emu.create_guild("Test Guild")
    emu.category = emu.create_category(emu.guild, "Community")
    emu.text_channel = emu.create_text_channel(emu.guild, "general", category=emu.category)
    emu.voice_channel = emu.create_voice_channel(emu.guild, "Lounge", category=emu.category)
    emu.thread = emu.create_thread(emu.text_channel, "general-thread")
    emu.member = emu.add_member(emu.guild, "alice")
    emu.moderator = emu.add_moderator(emu.guild, "mod")
    emu.admin = emu.add_admin(emu.guild, "admin")
    return emu


@pytest_asyncio.fixture
async def bare_emulator() -> AsyncIterator[DiscordEmulator]:
    """A started emulator with no guilds, discord.py patched to use it."""
    emu = DiscordEmulator()
    await emu.start()
    try:
        with emu.patch_discord():
            yield emu
    finally:
        await emu.close()
    if emu.refusals and not emu.refusals_expected:
        # A body Discord would refuse is a bug even when the bot copes with the 400.
        shown = json.dumps(emu.refusals, indent=1)[:4000]
        pytest.fail(f"Discord would have refused {len(emu.refusals)} request(s):\n{shown}")
    if emu.unhandled_requests:
        missing = sorted({f"{r.method} {r.path}" for r in emu.unhandled_requests})
        warnings.warn(f"discord emulator has no route for: {missing}", stacklevel=1)


@pytest_asyncio.fixture
async def emulator(bare_emulator: DiscordEmulator) -> DiscordEmulator:
    """A started emulator with the default scene (see module docstring), discord.py patched."""
    return build_default_scene(bare_emulator)
