"""Automatic scans of voice messages, audio files and videos posted in guild channels."""

from bot.discord_glue.client import Spoofwatch
from cogs.autoscan._cog import AutoScan
from cogs.autoscan._views import VerdictButton


async def setup(bot: Spoofwatch) -> None:
    bot.add_dynamic_items(VerdictButton)
    await bot.add_cog(AutoScan(bot))


async def teardown(bot: Spoofwatch) -> None:
    bot.remove_dynamic_items(VerdictButton)
