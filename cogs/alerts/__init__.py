"""Mod-log alerts for suspicious scans, with buttons that survive restarts."""

from bot.discord_glue.client import Spoofwatch
from cogs.alerts._cog import Alerts
from cogs.alerts._views import AlertButton


async def setup(bot: Spoofwatch) -> None:
    bot.add_dynamic_items(AlertButton)
    await bot.add_cog(Alerts(bot))


async def teardown(bot: Spoofwatch) -> None:
    bot.remove_dynamic_items(AlertButton)
