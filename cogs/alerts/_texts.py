"""What the alert's buttons, a reviewed verdict and the poster's DM say, in one place.

Kept apart from the logic so that the wording can change without touching what the buttons do.
"""

from __future__ import annotations

from bot.discord_glue.embeds import sanitize
from bot.storage import Review

#: Button labels before anything was done (Discord: at most 80 characters).
CONFIRM = "Confirm deepfake"
FALSE_POSITIVE = "Not a deepfake"
DELETE = "Delete message"
UNDO_TIMEOUT = "Undo time-out"
SECOND_OPINION = "Second opinion"
#: Labels once done (the button is greyed out).
CONFIRMED = "Confirmed deepfake"
CLEARED = "Marked not a deepfake"
DELETED = "Message deleted"
TIMED_OUT = "Timed out"

#: The modal that asks for an optional reason (title ≤ 45, input label ≤ 45 characters).
REASON_LABEL = "Reason (optional)"
REASON_PLACEHOLDER = "Kept on the case; shown to moderators only"
#: Longest reason kept (the case's review note keeps fewer; Discord's audit log reason 512).
REASON_CHARS = 400


def modal_title(what: str, case_number: int) -> str:
    return f"{what} — case #{case_number}"[:45]


def review_word(decision: Review) -> str:
    return "confirmed deepfake" if decision is Review.CONFIRMED else "not a deepfake"


def reviewed_line(decision: Review, moderator_mention: str, reason: str | None) -> str:
    """The alert's record of a review."""
    return f"Marked **{review_word(decision)}** by {moderator_mention}" + _because(reason)


def already_reviewed(decision: Review, moderator_id: int | None) -> str:
    by = f" by <@{moderator_id}>" if moderator_id else ""
    return f"Already reviewed: **{review_word(decision)}**{by}. Nothing was changed."


def public_review_title(decision: Review) -> str:
    """The title a public verdict takes once a moderator has reviewed it."""
    if decision is Review.FALSE_POSITIVE:
        return "Reviewed by a moderator: not a deepfake"
    return "Reviewed by a moderator: deepfake confirmed"


def timed_out_line(author_id: int, length: str, moderator_mention: str, reason: str | None) -> str:
    return f"<@{author_id}> timed out for {length} by {moderator_mention}" + _because(reason)


def timeout_undone_line(author_id: int, moderator_mention: str) -> str:
    return f"Time-out of <@{author_id}> lifted by {moderator_mention}"


def deleted_dm(
    guild_name: str, channel_name: str, case_number: int, probability: float | None
) -> str:
    """The DM to a member whose message was deleted automatically: why, and what to do."""
    score = "" if probability is None else f" ({probability:.0%} likely)"
    return (
        f"Your message in **{sanitize(guild_name, limit=100) or 'a server'}** "
        f"(#{sanitize(channel_name, limit=100) or 'a channel'}) was removed automatically: "
        f"Spoofwatch found that its voice may be AI-generated{score}.\n"
        "Detectors can be wrong. If this is a mistake, ask the server's moderators to review "
        f"**case #{case_number}**."
    )


def _because(reason: str | None) -> str:
    return f": “{sanitize(reason, limit=200)}”" if reason and reason.strip() else ""


def second_opinion_label(provider: str, *, given: bool) -> str:
    """The second-opinion button: whom it asks, or that the answer is on the case."""
    return f"Second opinion given ({provider})" if given else f"Second opinion ({provider})"
