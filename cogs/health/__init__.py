"""Provider account health: periodic credential checks, and mod-log notices when it changes."""

from bot.discord_glue.client import Spoofwatch
from cogs.health._cog import Health


async def setup(bot: Spoofwatch) -> None:
    await bot.add_cog(Health(bot))
