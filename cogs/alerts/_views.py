"""Alert buttons. The case travels in the custom id, so they keep working after a restart.

Each button shows what has been done: after an action the alert is redrawn from the case
(its review and its recorded actions), so a confirmed case greys out both review buttons, a
deleted message greys out Delete, and a time-out greys out the time-outs and offers an undo.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, replace
from datetime import timedelta
from enum import StrEnum
from typing import Any

import discord

from bot.discord_glue.client import Spoofwatch, permission_name
from bot.discord_glue.embeds import PROVIDER_NAMES
from bot.discord_glue.second_opinion_flow import ask_second_opinion
from bot.storage import AuditEvent, Review, ScanRecord
from bot.verdict import ProviderName
from cogs.alerts import _texts as texts
from cogs.alerts._actions import delete_message, time_out, undo_time_out
from cogs.alerts._public import mark_public_verdict

log = logging.getLogger(__name__)


class AlertAction(StrEnum):
    CONFIRM = "confirm"
    FALSE_POSITIVE = "fp"
    DELETE = "delete"
    TIMEOUT_10M = "t10m"
    TIMEOUT_1H = "t1h"
    TIMEOUT_1D = "t1d"
    UNDO_TIMEOUT = "untimeout"
    SECOND_OPINION = "second"


TIMEOUTS = {
    AlertAction.TIMEOUT_10M: timedelta(minutes=10),
    AlertAction.TIMEOUT_1H: timedelta(hours=1),
    AlertAction.TIMEOUT_1D: timedelta(days=1),
}
LABELS = {
    AlertAction.CONFIRM: (texts.CONFIRM, discord.ButtonStyle.danger),
    AlertAction.FALSE_POSITIVE: (texts.FALSE_POSITIVE, discord.ButtonStyle.success),
    AlertAction.DELETE: (texts.DELETE, discord.ButtonStyle.secondary),
    AlertAction.TIMEOUT_10M: ("Time out 10 min", discord.ButtonStyle.secondary),
    AlertAction.TIMEOUT_1H: ("Time out 1 h", discord.ButtonStyle.secondary),
    AlertAction.TIMEOUT_1D: ("Time out 1 day", discord.ButtonStyle.secondary),
    AlertAction.UNDO_TIMEOUT: (texts.UNDO_TIMEOUT, discord.ButtonStyle.primary),
    AlertAction.SECOND_OPINION: (texts.SECOND_OPINION, discord.ButtonStyle.primary),
}
REVIEWS = {
    AlertAction.CONFIRM: Review.CONFIRMED,
    AlertAction.FALSE_POSITIVE: Review.FALSE_POSITIVE,
}
#: Actions that first ask for an optional reason (a modal).
ASKS_REASON = frozenset({*REVIEWS, *TIMEOUTS})
#: What the clicking moderator must be allowed to do.
NEEDS = {
    AlertAction.CONFIRM: "manage_messages",
    AlertAction.FALSE_POSITIVE: "manage_messages",
    AlertAction.DELETE: "manage_messages",
    AlertAction.TIMEOUT_10M: "moderate_members",
    AlertAction.TIMEOUT_1H: "moderate_members",
    AlertAction.TIMEOUT_1D: "moderate_members",
    AlertAction.UNDO_TIMEOUT: "moderate_members",
    # Billed like a scan: moderators only, as the review buttons.
    AlertAction.SECOND_OPINION: "manage_messages",
}
#: Alert colours: open, and once a moderator said it was not a deepfake.
OPEN_COLOUR = discord.Colour.red()
CLEARED_COLOUR = discord.Colour.green()


@dataclass(frozen=True)
class AlertState:
    """What has been done about a case, as its alert shows it."""

    review: Review | None = None
    message_gone: bool = False
    timed_out: bool = False
    #: The case was deleted (forgotten or expired): nothing is left to act on.
    gone: bool = False
    #: The other provider's verdict is on the case already (asked, or "provider both").
    second_opinion: bool = False


def state_of(record: ScanRecord | None, events: list[AuditEvent]) -> AlertState:
    """The alert's state from the case and its events (oldest first)."""
    if record is None:
        return AlertState(gone=True)
    timed_out = False
    second = False
    for event in events:
        if event.action == "second_opinion":
            second = True
        elif event.action == "timeout":
            timed_out = True
        elif event.action == "untimeout":
            timed_out = False
    return AlertState(
        review=record.review,
        message_gone=any(e.action == "delete" for e in events),
        timed_out=timed_out,
        second_opinion=second,
    )


class AlertButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"sw:alert:(?P<action>[a-z0-9]+):(?P<case>\d+)",
):
    """One action on one case; the guild comes from the interaction, never from the id."""

    def __init__(
        self,
        action: AlertAction,
        case_number: int,
        *,
        label: str | None = None,
        style: discord.ButtonStyle | None = None,
        disabled: bool = False,
        row: int | None = None,
    ) -> None:
        default_label, default_style = LABELS[action]
        super().__init__(
            discord.ui.Button(
                label=label or default_label,
                style=style or default_style,
                custom_id=f"sw:alert:{action.value}:{case_number}",
                disabled=disabled,
                row=row,
            )
        )
        self.action = action
        self.case_number = case_number
        self.side_by_side: discord.Embed | None = None

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
            log.info(
                "alert action %s on case #%s refused to %s: lacks %s",
                self.action.value,
                self.case_number,
                interaction.user.id,
                needed,
            )
            await interaction.response.send_message(
                f"You need the {permission_name(needed)} permission for that.",
                ephemeral=True,
            )
            return False
        return True

    async def callback(self, interaction: discord.Interaction[Spoofwatch]) -> None:  # type: ignore[override]
        assert interaction.guild is not None
        if self.action in ASKS_REASON and await self._still_open(interaction):
            await interaction.response.send_modal(ReasonModal(self))
            return
        await self.run(interaction, reason=None)

    async def _still_open(self, interaction: discord.Interaction[Spoofwatch]) -> bool:
        """Whether asking for a reason makes sense (the case exists and is not reviewed)."""
        assert interaction.guild is not None
        record = await interaction.client.audit.cases.case(interaction.guild.id, self.case_number)
        return record is not None and (self.action not in REVIEWS or record.review is None)

    async def run(self, interaction: discord.Interaction[Spoofwatch], reason: str | None) -> None:
        """Do the action (after the modal, if any) and redraw the alert."""
        assert interaction.guild is not None
        await interaction.response.defer()
        done, outcome, message_gone = await self._act(interaction, interaction.guild.id, reason)
        log.log(
            logging.INFO if done else logging.WARNING,
            "alert action %s on case %s/#%s by %s: %s",
            self.action.value,
            interaction.guild.id,
            self.case_number,
            interaction.user.id,
            outcome,
        )
        await _show_outcome(interaction, self.case_number, outcome, message_gone=message_gone)
        if self.side_by_side is not None:
            await interaction.followup.send(embed=self.side_by_side)

    async def _act(
        self, interaction: discord.Interaction[Spoofwatch], guild_id: int, reason: str | None
    ) -> tuple[bool, str, bool]:
        """Do the action and record it on the case.

        Returns whether it happened, what to show on the alert, and whether the message is
        known to be gone (to grey out Delete even when someone else deleted it).
        """
        audit = interaction.client.audit
        record = await audit.cases.case(guild_id, self.case_number)
        if record is None:
            return False, f"Case #{self.case_number} no longer exists (deleted or expired).", False
        decision = REVIEWS.get(self.action)
        if decision is not None:
            if record.review is not None:
                # Confirm and Not a deepfake exclude each other: the first review stands.
                return False, texts.already_reviewed(record.review, record.reviewed_by), False
            # The review is the record: the audit log logs it as an event of the case.
            reviewed = await audit.admin.review(
                guild_id,
                self.case_number,
                decision,
                moderator_id=interaction.user.id,
                note=_clip(reason),
                first=True,
            )
            if reviewed is None:
                # Another moderator decided meanwhile, or the case was deleted.
                now = await audit.cases.case(guild_id, self.case_number)
                if now is None or now.review is None:
                    return False, f"Case #{self.case_number} no longer exists.", False
                return False, texts.already_reviewed(now.review, now.reviewed_by), False
            # The provider hears of it where the guild opted in.
            interaction.client.provider_copies.send_review_feedback_soon(reviewed, decision)
            shown = texts.reviewed_line(decision, interaction.user.mention, reason)
            public = await mark_public_verdict(interaction.guild, reviewed, decision)
            return True, shown + (f"\n{public}" if public else ""), False
        if self.action is AlertAction.SECOND_OPINION:
            kind = "second_opinion"
            kept = interaction.message.attachments if interaction.message else []
            answer = await ask_second_opinion(
                interaction.client, record, requested_by=interaction.user.id, kept=kept
            )
            done, outcome, gone = answer.done, answer.line, False
            # Both verdicts side by side, posted for every moderator once the alert is
            # redrawn (`run`).
            self.side_by_side = answer.embed
        elif self.action is AlertAction.DELETE:
            kind = "delete"
            done, outcome = await delete_message(interaction, record.channel_id, record.message_id)
            gone = done or "already deleted" in outcome
        else:
            kind = "timeout"
            if self.action is AlertAction.UNDO_TIMEOUT:
                kind = "untimeout"
                done, outcome = await undo_time_out(interaction, record.author_id)
            else:
                length = TIMEOUTS[self.action]
                done, outcome = await time_out(interaction, record.author_id, length, reason)
            gone = False
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
        return done, outcome, gone


#: A reason modal's custom id names the action and the case, like the buttons' ids.
REASON_ID = re.compile(r"sw:reason:(?P<action>[a-z0-9]+):(?P<case>\d+)")
REASON_INPUT = "reason"


class ReasonModal(discord.ui.Modal):
    """Asks the moderator for an optional reason before a review or a time-out.

    Only its form is used: the submission is handled by `submit_reason` (the alerts cog's
    interaction listener) from the custom id alone, so a restart between opening the form
    and sending it loses nothing, as with the buttons.
    """

    reason: discord.ui.TextInput[ReasonModal] = discord.ui.TextInput(
        label=texts.REASON_LABEL,
        style=discord.TextStyle.paragraph,
        required=False,
        max_length=texts.REASON_CHARS,
        placeholder=texts.REASON_PLACEHOLDER,
        custom_id=REASON_INPUT,
    )

    def __init__(self, button: AlertButton) -> None:
        super().__init__(
            title=texts.modal_title(LABELS[button.action][0], button.case_number),
            custom_id=f"sw:reason:{button.action.value}:{button.case_number}",
            timeout=None,
        )
        # A finished modal is not kept in discord.py's store; `submit_reason` answers it.
        self.stop()


async def submit_reason(interaction: discord.Interaction[Spoofwatch]) -> bool:
    """Act on a submitted reason modal; False if the interaction is not one of ours."""
    data: dict[str, Any] = dict(interaction.data or {})
    match = REASON_ID.fullmatch(str(data.get("custom_id", "")))
    if interaction.type is not discord.InteractionType.modal_submit or match is None:
        return False
    try:
        action = AlertAction(match["action"])
    except ValueError:
        return False
    if action not in ASKS_REASON:
        return False
    button = AlertButton(action, int(match["case"]))
    # The permission is checked again on the submission itself.
    if not await button.interaction_check(interaction):
        return True
    reason = _typed(data.get("components") or [], REASON_INPUT)
    await button.run(interaction, reason=(reason or "").strip() or None)
    return True


def _typed(components: list[Any], custom_id: str) -> str | None:
    """The value of a modal's text input, in rows (or labels) as Discord sends them back."""
    for component in components:
        if not isinstance(component, dict):
            continue
        if component.get("custom_id") == custom_id:
            value = component.get("value")
            return value if isinstance(value, str) else None
        nested = component.get("components") or (
            [component["component"]] if isinstance(component.get("component"), dict) else []
        )
        found = _typed(nested, custom_id)
        if found is not None:
            return found
    return None


async def _show_outcome(
    interaction: discord.Interaction[Spoofwatch],
    case_number: int,
    outcome: str,
    *,
    message_gone: bool,
) -> None:
    """Add the outcome to the alert's Actions and redraw its buttons from the case."""
    assert interaction.guild is not None
    audit = interaction.client.audit
    record = await audit.cases.case(interaction.guild.id, case_number)
    events = await audit.cases.case_events(interaction.guild.id, case_number) if record else []
    state = state_of(record, events)
    if message_gone:
        state = replace(state, message_gone=True)
    second_from = interaction.client.second_opinions.other(record) if record else None
    if record is not None and second_from is not None and not state.second_opinion:
        # Given without the button ("provider both"): on the case, not among its events.
        given = await interaction.client.second_opinions.existing(record.guild_id, case_number)
        state = replace(state, second_opinion=any(r.label is not None for r in given))
    view = alert_view(case_number, state, second_from=second_from)
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
    embed.colour = CLEARED_COLOUR if state.review is Review.FALSE_POSITIVE else OPEN_COLOUR
    try:
        await interaction.edit_original_response(embed=embed, view=view)
    except discord.HTTPException:
        log.warning("could not update the alert of case #%s", case_number, exc_info=True)
        await interaction.followup.send(outcome, ephemeral=True)


def _clip(reason: str | None) -> str | None:
    return reason[: texts.REASON_CHARS] if reason else None


def alert_view(
    case_number: int,
    state: AlertState | None = None,
    *,
    second_from: ProviderName | None = None,
) -> discord.ui.View:
    """The alert's buttons as `state` leaves them: what is done is greyed out and relabelled.

    Row 0 holds the review (Confirm deepfake / Not a deepfake) and, when `second_from` (the
    other configured provider) is given, the second opinion; row 1 the actions.
    """
    state = state or AlertState()
    view = discord.ui.View(timeout=None)
    off = state.gone
    reviewed = state.review is not None

    def add(action: AlertAction, row: int, **kwargs: Any) -> None:
        kwargs["disabled"] = kwargs.get("disabled", False) or off
        view.add_item(AlertButton(action, case_number, row=row, **kwargs))

    grey = discord.ButtonStyle.secondary
    add(
        AlertAction.CONFIRM,
        0,
        label=texts.CONFIRMED if state.review is Review.CONFIRMED else None,
        style=grey if state.review is Review.FALSE_POSITIVE else None,
        disabled=reviewed,
    )
    add(
        AlertAction.FALSE_POSITIVE,
        0,
        label=texts.CLEARED if state.review is Review.FALSE_POSITIVE else None,
        style=grey if state.review is Review.CONFIRMED else None,
        disabled=reviewed,
    )
    if second_from is not None:
        name = PROVIDER_NAMES.get(second_from, str(second_from))
        add(
            AlertAction.SECOND_OPINION,
            0,
            label=texts.second_opinion_label(name, given=state.second_opinion),
            style=grey if state.second_opinion else None,
            disabled=state.second_opinion,
        )
    add(
        AlertAction.DELETE,
        1,
        label=texts.DELETED if state.message_gone else None,
        disabled=state.message_gone,
    )
    for action in TIMEOUTS:
        add(action, 1, disabled=state.timed_out)
    if state.timed_out:
        add(AlertAction.UNDO_TIMEOUT, 1)
    return view
