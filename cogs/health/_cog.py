"""Tell each mod-log, once per change, when its detection service stops taking the bot's
credentials or runs out of credits, and when it works again.

Members never see these problems: an automatic scan that fails for them gets no public reply
(the autoscan cog leaves it to this notice), and the operator reads the details in the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import discord
from discord.ext import commands

from bot.discord_glue.attachments import guild_provider
from bot.discord_glue.client import Spoofwatch
from bot.discord_glue.embeds import sanitize
from bot.discord_glue.modlog import post_to_modlog
from bot.guild_config import GuildConfig
from bot.provider_health import AccountProblem, ProviderState
from bot.scanning import ScanOutcome
from bot.verdict import ProviderName

log = logging.getLogger(__name__)

_NAMES = {
    ProviderName.BEHAVIORAL_SIGNALS: "Behavioral Signals",
    ProviderName.RESEMBLE: "Resemble Detect",
}


def notice_embed(state: ProviderState) -> discord.Embed:
    """The mod-log notice of a change in a provider's account state."""
    name = _NAMES.get(state.provider, state.provider.value)
    if state.problem is None:
        return discord.Embed(
            title=f"✅ {name} works again",
            description="Scans go through again.",
            colour=discord.Colour.green(),
        )
    what = (
        "refuses the bot's API key"
        if state.problem is AccountProblem.REFUSED
        else "says the account is out of credits"
    )
    embed = discord.Embed(
        title=f"⚠️ Scans are failing: {name} {what}",
        description=(
            "Automatic scans get no verdict until the bot's operator fixes the account; "
            "members are not shown this. The operator's log has the details."
        ),
        colour=discord.Colour.orange(),
    )
    if state.detail:
        embed.add_field(name="The service said", value=sanitize(state.detail, limit=1000) or "—")
    return embed


class Health(commands.Cog):
    def __init__(self, bot: Spoofwatch) -> None:
        self.bot = bot
        self._task: asyncio.Task[None] | None = None
        #: Notices being posted: a change is told to every mod-log in the background, so
        #: the scan or check that revealed it is not held up.
        self._notices: set[asyncio.Task[None]] = set()
        bot.provider_health.subscribe(self._notice_soon)

    async def cog_load(self) -> None:
        interval = self.bot.settings.credential_check_s
        if interval > 0:
            self._task = asyncio.create_task(self._check_every(interval))

    async def _notice_soon(self, state: ProviderState) -> None:
        task = asyncio.create_task(self.tell_modlogs(state), name="provider-notice")
        self._notices.add(task)
        task.add_done_callback(self._notices.discard)

    async def cog_unload(self) -> None:
        for notice in list(self._notices):
            notice.cancel()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _check_every(self, interval: float) -> None:
        # The start-up check already ran (bot.resources): the first one here is one interval on.
        while True:
            await asyncio.sleep(interval)
            try:
                await self.bot.provider_health.check()
            except Exception:
                log.exception("periodic credential check failed")

    @commands.Cog.listener()
    async def on_scan_finished(
        self, message: discord.Message, outcomes: list[ScanOutcome], config: GuildConfig
    ) -> None:
        for outcome in outcomes:
            if outcome.replayed:
                continue  # finished before a restart: says nothing of the provider now
            await self.bot.provider_health.observe(outcome.record.provider, outcome.error)

    async def tell_modlogs(self, state: ProviderState) -> None:
        """Post the change in every mod-log of a guild that scans with this provider."""
        embed = notice_embed(state)
        for guild in list(self.bot.guilds):
            config = await self.bot.guild_configs.get(guild.id)
            if config.modlog_channel_id is None:
                continue
            provider = guild_provider(self.bot.settings, config, self.bot.scans.providers)
            if provider is not state.provider:
                continue
            posted = await post_to_modlog(guild, config, embed=embed)
            if isinstance(posted, str):
                log.warning(
                    "could not tell the mod-log of guild %s about %s: %s",
                    guild.id,
                    state.provider.value,
                    posted,
                )
