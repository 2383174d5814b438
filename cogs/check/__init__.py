"""`/check` and the message menu *Apps → Check for deepfake*."""

from bot.discord_glue.client import Spoofwatch
from cogs.check._cog import Check


async def setup(bot: Spoofwatch) -> None:
    await bot.add_cog(Check(bot))
