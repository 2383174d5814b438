"""Automatic scans of voice messages, audio files and videos posted in guild channels."""

from bot.client import Spoofwatch
from cogs.autoscan._cog import AutoScan


async def setup(bot: Spoofwatch) -> None:
    await bot.add_cog(AutoScan(bot))
