"""`/help`: what Spoofwatch does, in words for members, and for moderators and admins."""

from bot.client import Spoofwatch
from cogs.help._cog import Help


async def setup(bot: Spoofwatch) -> None:
    await bot.add_cog(Help(bot))
