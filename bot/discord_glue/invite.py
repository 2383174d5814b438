"""What Spoofwatch needs to be granted in a server, and the invite URL that asks for it.

One list serves the invite printed at start-up and the `/spoofwatch setup` checklist, so
the two can never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

import discord


@dataclass(frozen=True)
class Needed:
    #: discord.py's name of the permission ("send_messages").
    name: str
    #: What Spoofwatch does with it, in an admin's words.
    use: str
    #: Without it Spoofwatch cannot answer at all (else one feature is off).
    essential: bool


NEEDED: tuple[Needed, ...] = (
    Needed("view_channel", "see the channels it scans", True),
    Needed("send_messages", "reply with verdicts", True),
    Needed("embed_links", "show verdicts", True),
    Needed("read_message_history", "reply to a message", True),
    Needed("send_messages_in_threads", "reply in threads", False),
    Needed("attach_files", "attach the timeline picture", False),
    Needed("add_reactions", "mark slow scans with 🔍", False),
    Needed("manage_messages", "delete deepfakes, when the action says so", False),
    Needed("moderate_members", "time members out from alerts", False),
)


def needed_permissions() -> discord.Permissions:
    """Every permission Spoofwatch uses, as one value for the invite URL."""
    return discord.Permissions(**{n.name: True for n in NEEDED})


def invite_url(application_id: int) -> str:
    """The OAuth2 URL that adds the bot with its slash commands and needed permissions."""
    return discord.utils.oauth_url(
        application_id,
        permissions=needed_permissions(),
        scopes=("bot", "applications.commands"),
    )


def lacking(permissions: discord.Permissions, *, essential_only: bool = False) -> list[Needed]:
    """The needed permissions `permissions` does not grant."""
    return [
        n
        for n in NEEDED
        if (n.essential or not essential_only) and not getattr(permissions, n.name)
    ]
