"""Alert buttons. The case travels in the custom id, so they keep working after a restart."""

from __future__ import annotations

import logging
import re
from datetime import timedelta
from enum import StrEnum
from typing import Any

import discord

from bot.client import Spoofwatch, permission_name
from bot.storage import Review

log = logging.getLogger(__name__)


class AlertAction(StrEnum):
    CONFIRM = "confirm"
    FALSE_POSITIVE = "fp"
    DELETE = "delete"
    TIMEOUT_10M = "t10m"
    TIMEOUT_1H = "t1h"
    TIMEOUT_1D = "t1d"


TIMEOUTS = {
    AlertAction.TIMEOUT_10M: timedelta(minutes=10),
    AlertAction.TIMEOUT_1H: timedelta(hours=1),
    AlertAction.TIMEOUT_1D: timedelta(days=1),
}
LABELS = {
    AlertAction.CONFIRM: ("Confirm", discord.ButtonStyle.danger),
    AlertAction.FALSE_POSITIVE: ("False positive", discord.ButtonStyle.success),
    AlertAction.DELETE: ("Delete message", discord.ButtonStyle.secondary),
    AlertAction.TIMEOUT_10M: ("Time out 10 min", discord.ButtonStyle.secondary),
    AlertAction.TIMEOUT_1H: ("Time out 1 h", discord.ButtonStyle.secondary),
    AlertAction.TIMEOUT_1D: ("Time out 1 day", discord.ButtonStyle.secondary),
}
REVIEWS = {
    AlertAction.CONFIRM: Review.CONFIRMED,
    AlertAction.FALSE_POSITIVE: Review.FALSE_POSITIVE,
}
#: What the clicking moderator must be allowed to do.
NEEDS = {
    AlertAction.CONFIRM: "manage_messages",
    AlertAction.FALSE_POSITIVE: "manage_messages",
    AlertAction.DELETE: "manage_messages",
    AlertAction.TIMEOUT_10M: "moderate_members",
    AlertAction.TIMEOUT_1H: "moderate_members",
    AlertAction.TIMEOUT_1D: "moderate_members",
}


class AlertButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"sw:alert:(?P<action>[a-z0-9]+):(?P<case>\d+)",
):
    """One action on one case; the guild comes from the interaction, never from the id."""

    def __init__(self, action: AlertAction, case_number: int) -> None:
        label, style = LABELS[action]
        super().__init__(
            discord.ui.Button(
                label=label, style=style, custom_id=f"sw:alert:{action.value}:{case_number}"
            )
        )
        self.action = action
        self.case_number = case_number

    @classmethod
    async def from_custom_id(  # type: ignore[override]
        cls,
        interaction: discord.Interaction[Spoofwatch],
        item: discord.ui.Button[Any],
        match: re.Match[str],
    ) -> AlertButton:
        return cls(AlertAction(match["action"]), int(match["case"]))

    async def interaction_check(self, interaction: discord.Interaction[Spoofwatch]) -> bool:  # type: ignore[override]
        needed = NEEDS[self.action]
        if interaction.guild is None or not getattr(interaction.permissions, needed):
            await interaction.response.send_message(
                f"You need the {permission_name(needed)} permission for that.",
                ephemeral=True,
            )
            return False
        return True

    async def callback(self, interaction: discord.Interaction[Spoofwatch]) -> None:  # type: ignore[override]
        assert interaction.guild is not None
        await interaction.response.defer()
        done, outcome = await self._act(interaction, interaction.guild.id)
        log.log(
            logging.INFO if done else logging.WARNING,
            "alert action %s on case %s/#%s by %s: %s",
            self.action.value,
            interaction.guild.id,
            self.case_number,
            interaction.user.id,
            outcome,
        )
        await _show_outcome(interaction, outcome)

    async def _act(
        self, interaction: discord.Interaction[Spoofwatch], guild_id: int
    ) -> tuple[bool, str]:
        """Do the action and record it on the case; (whether it happened, what to show)."""
        audit = interaction.client.audit
        record = await audit.cases.case(guild_id, self.case_number)
        if record is None:
            return False, f"Case #{self.case_number} no longer exists (deleted or expired)."
        decision = REVIEWS.get(self.action)
        if decision is not None:
            # The review is the record: the audit log logs it as an event of the case.
            reviewed = await audit.admin.review(
                guild_id, self.case_number, decision, moderator_id=interaction.user.id
            )
            if reviewed is not None:  # the provider hears of it where the guild opted in
                interaction.client.provider_copies.send_review_feedback_soon(reviewed, decision)
            shown = decision.value.replace("_", " ")
            return reviewed is not None, f"Marked **{shown}** by {interaction.user.mention}"
        if self.action is AlertAction.DELETE:
            kind = "delete"
            done, outcome = await _delete(interaction, record.channel_id, record.message_id)
        else:
            kind = "timeout"
            done, outcome = await _timeout(interaction, record.author_id, TIMEOUTS[self.action])
        # Only actions that happened are recorded on the case (a failed one is not a fact
        # about the member); failures stay visible on the alert and in the log.
        if done:
            await audit.admin.record_action(
                guild_id,
                self.case_number,
                action=kind,
                actor_id=interaction.user.id,
                outcome=outcome,
            )
        return done, outcome


async def _delete(
    interaction: discord.Interaction[Spoofwatch], channel_id: int | None, message_id: int | None
) -> tuple[bool, str]:
    """Delete the case's message; (whether it was deleted, what to show on the alert)."""
    assert interaction.guild is not None
    channel = interaction.guild.get_channel_or_thread(channel_id) if channel_id else None
    if channel is None or message_id is None or not isinstance(channel, discord.abc.Messageable):
        return False, "⚠️ Could not delete: the channel is gone."
    try:
        await channel.get_partial_message(message_id).delete()
    except discord.NotFound:
        return False, "⚠️ Could not delete: the message was already deleted."
    except discord.Forbidden:
        return False, "⚠️ Could not delete: Spoofwatch lacks the Manage Messages permission there."
    except discord.HTTPException as exc:
        return False, f"⚠️ Could not delete: Discord said {exc.status}."
    return True, f"Message deleted by {interaction.user.mention}"


async def _timeout(
    interaction: discord.Interaction[Spoofwatch], author_id: int | None, length: timedelta
) -> tuple[bool, str]:
    """Time the case's author out; (whether it happened, what to show on the alert)."""
    assert interaction.guild is not None
    if author_id is None:
        return False, "⚠️ Could not time out: the case has no author."
    try:
        member = await interaction.guild.fetch_member(author_id)
        await member.timeout(length, reason=f"Spoofwatch alert, by {interaction.user.id}")
    except discord.NotFound:
        return False, "⚠️ Could not time out: the member left the server."
    except discord.Forbidden:
        return False, "⚠️ Could not time out: Spoofwatch lacks Moderate Members or ranks below them."
    except discord.HTTPException as exc:
        return False, f"⚠️ Could not time out: Discord said {exc.status}."
    return True, f"<@{author_id}> timed out for {_human(length)} by {interaction.user.mention}"


async def _show_outcome(interaction: discord.Interaction[Spoofwatch], outcome: str) -> None:
    message = interaction.message
    if message is None or not message.embeds:
        await interaction.followup.send(outcome, ephemeral=True)
        return
    embed = message.embeds[0]
    previous = next((f for f in embed.fields if f.name == "Actions"), None)
    lines = (previous.value.splitlines() if previous and previous.value else [])[-8:]
    lines.append(f"{outcome} <t:{int(interaction.client.clock().timestamp())}:R>")
    if previous is not None:
        embed.remove_field(embed.fields.index(previous))
    embed.add_field(name="Actions", value="\n".join(lines)[-1024:], inline=False)
    try:
        await interaction.edit_original_response(embed=embed)
    except discord.HTTPException:
        await interaction.followup.send(outcome, ephemeral=True)


def _human(length: timedelta) -> str:
    minutes = int(length.total_seconds() // 60)
    if minutes % 1440 == 0:
        return f"{minutes // 1440} day"
    if minutes % 60 == 0:
        return f"{minutes // 60} h"
    return f"{minutes} min"


def alert_view(case_number: int) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    for action in AlertAction:
        view.add_item(AlertButton(action, case_number))
    return view
