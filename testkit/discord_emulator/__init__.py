"""A loopback Discord (REST, gateway, CDN) for end-to-end tests with the real discord.py client."""

from .bits import ChannelType, Intent, Permission
from .emulator import DiscordEmulator, DiscordPatch
from .interactions import InteractionHandle
from .models import Attachment, Channel, Guild, Member, Message, Role, User
from .rest_app import FaultRule, RecordedRequest

__all__ = [
    "Attachment",
    "Channel",
    "ChannelType",
    "DiscordEmulator",
    "DiscordPatch",
    "FaultRule",
    "Guild",
    "Intent",
    "InteractionHandle",
    "Member",
    "Message",
    "Permission",
    "RecordedRequest",
    "Role",
    "User",
]
