"""`/spoofwatch settings …` and `/spoofwatch forget` for server admins (Manage Guild)."""

from bot.discord_glue.client import Spoofwatch
from cogs.admin._cog import Admin


async def setup(bot: Spoofwatch) -> None:
    await bot.add_cog(Admin(bot))
