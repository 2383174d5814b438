"""`/audit …`: moderators' queries of the audit log (Manage Messages)."""

from bot.client import Spoofwatch
from cogs.audit._cog import Audit


async def setup(bot: Spoofwatch) -> None:
    await bot.add_cog(Audit(bot))
