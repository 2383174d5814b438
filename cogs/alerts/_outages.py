"""Outage notices: when automatic scans fail because the detection service (or Spoofwatch
itself) does, the mod-log hears of it once per outage, with the technical detail, and once more
when scans work again; members see only a short "could not check this one"."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

import discord

from bot.discord_glue.embeds import PROVIDER_NAMES, fit_embed, sanitize
from bot.discord_glue.modlog import post_to_modlog
from bot.errors import (
    InternalError,
    ProviderError,
    ProviderJobFailed,
    ProviderNotFound,
    ProviderRejected,
    SpoofwatchError,
)
from bot.guild_config import GuildConfig
from bot.provider_health import account_problem
from bot.scanning import ScanOutcome
from bot.verdict import ProviderName

log = logging.getLogger(__name__)

#: While an outage lasts, the notice is repeated this often (a reminder, not a flood).
REPEAT_AFTER: Final = timedelta(hours=6)

#: Failures about one file rather than the service: the member's file, not an outage.
_PER_FILE = (ProviderRejected, ProviderJobFailed, ProviderNotFound)


def is_outage(error: SpoofwatchError | None) -> bool:
    """Whether a failure says the service (or Spoofwatch) is failing, not the file."""
    if isinstance(error, InternalError):
        return True
    if account_problem(error) is not None:
        # A refused key or an empty balance has its own notice (cogs/health), once per change
        # for the whole bot: not a second one here.
        return False
    return isinstance(error, ProviderError) and not isinstance(error, _PER_FILE)


@dataclass
class Outage:
    started: datetime
    noticed: datetime
    failed: int
    first_case: int
    last_case: int


class OutageNotices:
    """Per guild: is an outage open, and when did the mod-log last hear of it (in memory: a
    restart at worst repeats one notice)."""

    def __init__(self, clock: Callable[[], datetime]) -> None:
        self._clock = clock
        self._open: dict[int, Outage] = {}

    async def observe(
        self, guild: discord.Guild, outcomes: list[ScanOutcome], config: GuildConfig
    ) -> None:
        failures = [o for o in outcomes if o.verdict is None and is_outage(o.error)]
        worked = any(o.verdict is not None and not o.reused for o in outcomes)
        now = self._clock()
        outage = self._open.get(guild.id)
        if failures:
            cases = [o.record.case_number for o in failures]
            if outage is None:
                outage = Outage(now, now, len(failures), min(cases), max(cases))
                self._open[guild.id] = outage
                await _post(guild, config, _started_embed(failures[0], outage))
            else:
                outage.failed += len(failures)
                outage.last_case = max(outage.last_case, *cases)
                if now - outage.noticed >= REPEAT_AFTER:
                    outage.noticed = now
                    await _post(guild, config, _started_embed(failures[-1], outage))
        elif worked and outage is not None:
            del self._open[guild.id]
            await _post(guild, config, _ended_embed(outage, now))


def _started_embed(failure: ScanOutcome, outage: Outage) -> discord.Embed:
    error = failure.error
    assert error is not None
    service = "Spoofwatch itself"
    if isinstance(error, ProviderError):
        try:
            service = PROVIDER_NAMES[ProviderName(error.provider)]
        except ValueError:
            service = sanitize(error.provider, limit=60) or "the detection service"
    embed = discord.Embed(
        title="Automatic scans are failing",
        colour=discord.Colour.orange(),
        description=(
            f"Scans fail because of {service}, not the members' files. Members see a short "
            '"could not check this one" under each file; this notice is not repeated for '
            "every clip. Another notice follows when scans work again."
        ),
        timestamp=outage.noticed,
    )
    embed.add_field(
        name="What went wrong",
        value=f"`{error.kind}`: {sanitize(error.message, limit=800) or '—'}",
        inline=False,
    )
    embed.add_field(name="What to do", value=error.hint or "Tell the bot's operator.", inline=False)
    embed.add_field(
        name="Failed so far",
        value=f"{outage.failed} file{'s' if outage.failed != 1 else ''}, from case "
        f"#{outage.first_case}",
    )
    return fit_embed(embed)


def _ended_embed(outage: Outage, now: datetime) -> discord.Embed:
    cases = (
        f"case #{outage.first_case}"
        if outage.first_case == outage.last_case
        else f"cases #{outage.first_case}–#{outage.last_case}"
    )
    minutes = max(1, round((now - outage.started).total_seconds() / 60))
    embed = discord.Embed(
        title="Automatic scans work again",
        colour=discord.Colour.green(),
        description=(
            f"{outage.failed} file{'s' if outage.failed != 1 else ''} could not be checked "
            f"during about {minutes} min ({cases}). `/check` on a message checks it again."
        ),
        timestamp=now,
    )
    return fit_embed(embed)


async def _post(guild: discord.Guild, config: GuildConfig, embed: discord.Embed) -> None:
    posted = await post_to_modlog(guild, config, embed=embed)
    if isinstance(posted, str):
        log.warning("guild %s: %s (not posted: %s)", guild.id, embed.title, posted)
    else:
        log.info("guild %s: %s (posted in the mod-log)", guild.id, embed.title)
