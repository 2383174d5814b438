"""`/audit …`: moderators' queries of the audit log (Manage Messages)."""

from bot.discord_glue.client import Spoofwatch
from cogs.audit._cog import Audit
from cogs.audit._views import SecondOpinionButton


async def setup(bot: Spoofwatch) -> None:
    bot.add_dynamic_items(SecondOpinionButton)
    await bot.add_cog(Audit(bot))


async def teardown(bot: Spoofwatch) -> None:
    bot.remove_dynamic_items(SecondOpinionButton)
