"""Discord's permission algorithm (developers/topics/permissions), for members and the bot."""

from __future__ import annotations

from .bits import ALL_PERMISSIONS, Permission
from .models import Channel, Guild, Member

# Text-only permissions a member loses in a channel where they cannot send messages.
_SEND_DEPENDENT = (
    Permission.MENTION_EVERYONE
    | Permission.SEND_TTS_MESSAGES
    | Permission.ATTACH_FILES
    | Permission.EMBED_LINKS
)
_TIMED_OUT_ALLOWED = Permission.VIEW_CHANNEL | Permission.READ_MESSAGE_HISTORY


def base_permissions(guild: Guild, member: Member) -> Permission:
    """Guild-wide permissions: @everyone plus the member's roles; owner and admins get all."""
    if member.id == guild.owner_id:
        return ALL_PERMISSIONS
    perms = guild.everyone_role.permissions
    for role_id in member.role_ids:
        role = guild.roles.get(role_id)
        if role is not None:
            perms |= role.permissions
    if perms & Permission.ADMINISTRATOR:
        return ALL_PERMISSIONS
    if member.timed_out:
        return perms & _TIMED_OUT_ALLOWED
    return perms


def channel_permissions(guild: Guild, channel: Channel, member: Member) -> Permission:
    """Permissions in a channel after overwrites; threads use their parent's overwrites."""
    base = base_permissions(guild, member)
    if base == ALL_PERMISSIONS:
        return base
    source = guild.channels.get(channel.parent_id or 0) if channel.is_thread else channel
    overwrites = source.overwrites if source is not None else {}

    perms = base
    everyone = overwrites.get(guild.id)
    if everyone is not None:
        perms = (perms & ~everyone.deny) | everyone.allow

    allow = deny = Permission(0)
    for role_id in member.role_ids:
        overwrite = overwrites.get(role_id)
        if overwrite is not None and overwrite.type == 0:
            allow |= overwrite.allow
            deny |= overwrite.deny
    perms = (perms & ~deny) | allow

    own = overwrites.get(member.id)
    if own is not None and own.type == 1:
        perms = (perms & ~own.deny) | own.allow

    if not perms & Permission.VIEW_CHANNEL:
        return Permission(0)
    send = Permission.SEND_MESSAGES_IN_THREADS if channel.is_thread else Permission.SEND_MESSAGES
    if not perms & send:
        perms &= ~_SEND_DEPENDENT
    if member.timed_out:
        perms &= _TIMED_OUT_ALLOWED
    return perms


def top_role_position(guild: Guild, member: Member) -> int:
    """Position of the member's highest role (0 for @everyone only)."""
    positions = [guild.roles[r].position for r in member.role_ids if r in guild.roles]
    return max(positions, default=0)


def can_moderate(guild: Guild, actor: Member, target: Member) -> bool:
    """Whether ``actor`` outranks ``target`` (owner and administrators cannot be moderated)."""
    if target.id == guild.owner_id:
        return False
    if actor.id == guild.owner_id:
        return True
    if base_permissions(guild, target) == ALL_PERMISSIONS:
        return False
    return top_role_position(guild, actor) > top_role_position(guild, target)
