"""Delivering `/check` answers: one message per file as it finishes, within the token's life.

Discord's interaction token lives 15 minutes (docs: interactions/receiving-and-responding.mdx,
"Followup Messages"); after that a follow-up is refused (401, 50027 "Invalid webhook token").
Ten long files or a slow provider can outlast it, so past that point answers go where the
token is not needed: the channel for a public check, a direct message for a private one.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable, Sequence

import discord

from bot.discord_glue.client import Spoofwatch

log = logging.getLogger(__name__)

#: Discord's lifetime of an interaction token, in seconds.
TOKEN_LIFETIME_S = 15 * 60
#: Stop using the token this long before it expires: a follow-up must arrive in time.
TOKEN_MARGIN_S = 30
#: What Discord answers once the token is gone (docs: topics/opcodes-and-status-codes.mdx):
#: 10015 Unknown Webhook, 50027 Invalid Webhook Token.
_TOKEN_GONE_CODES = frozenset({10015, 50027})


class CheckAnswers:
    """Sends each file's answer to the member who asked, whichever way still works."""

    def __init__(
        self,
        interaction: discord.Interaction[Spoofwatch],
        *,
        public: bool,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interaction = interaction
        self.public = public
        self._clock = clock
        # The command runs within moments of the interaction's creation (it must defer in 3 s).
        self._deadline = clock() + TOKEN_LIFETIME_S - TOKEN_MARGIN_S
        self._token_gone = False

    async def send(
        self, embeds: list[discord.Embed], pictures: Sequence[tuple[str, bytes]] = ()
    ) -> None:
        """One file's answer: a follow-up while the token lives, else the fallback.

        `pictures` are (file name, PNG) pairs the embeds show; each try attaches them afresh.
        """
        if not self._token_gone and self._clock() < self._deadline:
            try:
                await self.interaction.followup.send(
                    embeds=embeds,
                    files=_files(pictures),
                    ephemeral=not self.public,
                    allowed_mentions=discord.AllowedMentions.none(),
                )
                return
            except discord.HTTPException as exc:
                if exc.code not in _TOKEN_GONE_CODES:
                    raise
        if not self._token_gone:
            self._token_gone = True
            log.info(
                "interaction %s of user %s outlived its token; answering %s",
                self.interaction.id,
                self.interaction.user.id,
                "in the channel" if self.public else "by direct message",
            )
        await self._fallback(embeds, pictures)

    async def _fallback(
        self, embeds: list[discord.Embed], pictures: Sequence[tuple[str, bytes]]
    ) -> None:
        user = self.interaction.user
        try:
            if self.public and self.interaction.channel is not None:
                channel = self.interaction.channel
                assert isinstance(channel, discord.abc.Messageable)
                await channel.send(
                    f"{user.mention}'s `/check` (it took longer than Discord lets a command "
                    "answer):",
                    embeds=embeds,
                    files=_files(pictures),
                    allowed_mentions=discord.AllowedMentions.none(),
                )
            else:
                # A private answer stays private: a DM, never the channel.
                where = f" in <#{self.interaction.channel_id}>" if self.interaction.guild else ""
                await user.send(
                    f"Your `/check`{where} (it took longer than Discord lets a command answer):",
                    embeds=embeds,
                    files=_files(pictures),
                    allowed_mentions=discord.AllowedMentions.none(),
                )
        except discord.HTTPException as exc:
            # The cases are in the audit log; moderators can still read them there.
            log.warning(
                "could not deliver a late /check answer to user %s (interaction %s): %s",
                user.id,
                self.interaction.id,
                exc,
            )


def _files(pictures: Sequence[tuple[str, bytes]]) -> list[discord.File]:
    return [discord.File(io.BytesIO(data), filename=name) for name, data in pictures]
