"""`/help`: what Spoofwatch does, in words for members, and for moderators and admins."""

from bot.discord_glue.client import Spoofwatch
from cogs.help._cog import Help, answer_help

__all__ = ["answer_help", "setup"]


async def setup(bot: Spoofwatch) -> None:
    await bot.add_cog(Help(bot))
