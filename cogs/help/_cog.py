"""`/help` for everyone: members read what a verdict means and what they can do; whoever can
manage messages also reads the moderators' tools, and whoever can manage the server the set-up.

Public on purpose (the `/spoofwatch` group is for Manage Server only), always private.
`/spoofwatch help` (cogs/admin) answers the same, for whoever can open that group.
"""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord_glue.client import Spoofwatch
from bot.discord_glue.embeds import fit_embed
from bot.guild_config import GuildConfig
from bot.verdict import GENUINE_BELOW, percent


class Help(commands.Cog):
    def __init__(self, bot: Spoofwatch) -> None:
        self.bot = bot

    @app_commands.command(name="help")
    async def help(self, interaction: discord.Interaction[Spoofwatch]) -> None:
        """What Spoofwatch does here and how to use it."""
        await answer_help(interaction)


async def answer_help(interaction: discord.Interaction[Spoofwatch]) -> None:
    """The help for this reader, privately: `/help`, and `/spoofwatch help` for those who
    find Spoofwatch's commands under its group."""
    bot = interaction.client
    config = (
        await bot.guild_configs.get(interaction.guild_id) if interaction.guild_id else GuildConfig()
    )
    permissions = interaction.permissions
    embed = help_embed(
        config,
        in_guild=interaction.guild_id is not None,
        moderator=permissions.manage_messages,
        admin=permissions.manage_guild,
    )
    await interaction.response.send_message(embed=embed, ephemeral=True)


def help_embed(
    config: GuildConfig, *, in_guild: bool, moderator: bool, admin: bool
) -> discord.Embed:
    """The help, with the sections this reader can use."""
    embed = discord.Embed(title="Spoofwatch: checks voices for AI generation")
    embed.colour = discord.Colour.blurple()
    where = (
        "voice messages, audio files and videos posted here" if in_guild else "files you send it"
    )
    embed.description = (
        f"Spoofwatch sends {where} to an automated deepfake detector and says how likely the "
        "speech is AI-generated. Detectors can be wrong, both ways: treat a flag as a warning, "
        "not proof, and check with the sender another way before acting on what a message asks "
        "(codes, passwords, money)."
    )
    if in_guild:
        embed.add_field(
            name="Reading a verdict",
            value=(
                f"This server flags a file from **{percent(config.alert_threshold)}%** likely "
                f"synthetic. Under {percent(GENUINE_BELOW)}% is a strong sign the voice is real; "
                "in between is *unclear*. *What does this mean?* under a verdict explains it to "
                "you alone; *This is wrong* asks the moderators to look. When two detectors "
                "were asked and disagree, the verdict says so: nothing is decided, and "
                "moderators take a look."
            ),
            inline=False,
        )
    embed.add_field(
        name="Check something yourself",
        value=(
            "`/check` with a file, or a message link; or on any message: *Apps → Check for "
            "deepfake*. The answer is private unless you ask for it in public."
        ),
        inline=False,
    )
    if moderator:
        embed.add_field(
            name="For moderators",
            value=(
                "Flagged files reach the mod-log as alerts: *Confirm deepfake* or *Not a "
                "deepfake* (the public verdict then says a moderator reviewed it), delete, "
                "time out and undo. `/audit recent`, `user`, `case`, `flagged`, `stats` "
                "(reviews per score band, to tune the threshold), `export`, `review`. With two "
                "detection services, *Second opinion* asks the other one: agreeing verdicts "
                "keep their finding; one flag beside a non-flag is *disputed* (alerted, never "
                "averaged)."
            ),
            inline=False,
        )
    if admin:
        embed.add_field(
            name="For admins",
            value=(
                "`/spoofwatch setup` shows what is set up and what is left; "
                "`/spoofwatch settings …` chooses channels, threshold, public replies, the "
                "mod-log, actions, exempt roles, transcripts, retention and provider; "
                "`/spoofwatch forget` deletes a member's cases. This help is also "
                "`/spoofwatch help`."
            ),
            inline=False,
        )
    return fit_embed(embed)
