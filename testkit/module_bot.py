"""A whole bot for one test module: emulator, both stand-ins, runtime and client, built once.

For modules whose tests all read one end-to-end run (a module-scoped fixture, with
`loop_scope="module"`); the function-scoped `make_spoofwatch` builds a fresh world per test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.discord_glue.client import Spoofwatch
from bot.resources import open_runtime
from testkit.discord_emulator import DiscordEmulator
from testkit.discord_emulator.fixtures import build_default_scene
from testkit.e2e import e2e_settings
from testkit.standins import BehavioralSignalsStandIn, ResembleStandIn


@dataclass
class ModuleBot:
    emu: DiscordEmulator
    bot: Spoofwatch
    bs: BehavioralSignalsStandIn
    resemble: ResembleStandIn


@asynccontextmanager
async def module_bot(
    tmp: Path,
    *,
    scene: Callable[[DiscordEmulator], Any] | None = None,
    rate_limits: bool = False,
    **settings: Any,
) -> AsyncIterator[ModuleBot]:
    """Start everything on 127.0.0.1 (the default scene, then `scene(emu)` for more), run
    the bot with `e2e_settings(**settings)` until the block ends, then tear it all down.
    `rate_limits`: the emulator enforces Discord's rate limits."""
    emu = await DiscordEmulator(rate_limits=rate_limits).start()
    patch = emu.patch_discord()
    try:
        async with BehavioralSignalsStandIn() as bs, ResembleStandIn() as resemble:
            build_default_scene(emu)
            if scene is not None:
                scene(emu)
            async with open_runtime(e2e_settings(tmp, resemble, bs, **settings)) as runtime:
                bot = Spoofwatch(runtime)
                async with emu.run(bot):
                    yield ModuleBot(emu, bot, bs, resemble)
                    await bot.scan_pool.join()
    finally:
        await emu.close()
        patch.restore()
