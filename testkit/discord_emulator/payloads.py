"""The JSON Discord sends for each emulated object (API v10 shapes that discord.py 2.7 parses)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .bits import ChannelType, Permission, iso, snowflake_time
from .models import Attachment, Channel, Guild, Member, Message, Overwrite, Role, User

if TYPE_CHECKING:
    from .state import World

JSON = dict[str, Any]


def user_payload(user: User) -> JSON:
    """A user object."""
    data: JSON = {
        "id": str(user.id),
        "username": user.name,
        "discriminator": "0",
        "global_name": user.global_name,
        "avatar": None,
        "avatar_decoration_data": None,
        "banner": None,
        "accent_color": None,
        "public_flags": 0,
        "flags": 0,
        "primary_guild": None,
        "collectibles": None,
    }
    if user.bot:
        data["bot"] = True
    if user.system:
        data["system"] = True
    return data


def member_payload(
    member: Member, *, with_user: bool = True, permissions: Permission | None = None
) -> JSON:
    """A guild member object (``flags`` is required by discord.py 2.7)."""
    data: JSON = {
        "nick": member.nick,
        "avatar": None,
        "banner": None,
        "roles": [str(r) for r in member.role_ids],
        "joined_at": iso(member.joined_at),
        "premium_since": None,
        "deaf": False,
        "mute": False,
        "flags": 0,
        "pending": False,
        "communication_disabled_until": iso(member.communication_disabled_until),
    }
    if with_user:
        data["user"] = user_payload(member.user)
    if permissions is not None:
        data["permissions"] = str(int(permissions))
    return data


def role_payload(role: Role) -> JSON:
    """A role object."""
    data: JSON = {
        "id": str(role.id),
        "name": role.name,
        "color": 0,
        "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
        "hoist": False,
        "icon": None,
        "unicode_emoji": None,
        "position": role.position,
        "permissions": str(int(role.permissions)),
        "managed": role.managed,
        "mentionable": role.mentionable,
        "flags": 0,
    }
    if role.bot_id is not None:
        data["tags"] = {"bot_id": str(role.bot_id)}
    return data


def overwrite_payload(overwrite: Overwrite) -> JSON:
    """A permission overwrite object."""
    return {
        "id": str(overwrite.id),
        "type": overwrite.type,
        "allow": str(int(overwrite.allow)),
        "deny": str(int(overwrite.deny)),
    }


def channel_payload(world: World, channel: Channel) -> JSON:
    """A channel object of any modelled type."""
    data: JSON = {"id": str(channel.id), "type": int(channel.type), "flags": 0}
    if channel.type == ChannelType.DM:
        data["last_message_id"] = _opt_str(channel.last_message_id)
        data["recipients"] = [user_payload(world.users[u]) for u in channel.recipient_ids]
        return data
    data.update(
        guild_id=str(channel.guild_id),
        name=channel.name,
        parent_id=_opt_str(channel.parent_id),
        position=channel.position,
        nsfw=False,
        rate_limit_per_user=0,
    )
    if channel.is_thread:
        created = snowflake_time(channel.id)
        data.update(
            owner_id=str(channel.owner_id),
            last_message_id=_opt_str(channel.last_message_id),
            message_count=len(world.channel_messages.get(channel.id, [])),
            member_count=1,
            total_message_sent=len(world.channel_messages.get(channel.id, [])),
            thread_metadata={
                "archived": channel.archived,
                "auto_archive_duration": 1440,
                "archive_timestamp": iso(created),
                "locked": False,
                "create_timestamp": iso(created),
            },
        )
        return data
    data["permission_overwrites"] = [overwrite_payload(o) for o in channel.overwrites.values()]
    if channel.type == ChannelType.GUILD_TEXT:
        data.update(
            topic=channel.topic,
            last_message_id=_opt_str(channel.last_message_id),
            default_auto_archive_duration=1440,
        )
    elif channel.type == ChannelType.GUILD_VOICE:
        data.update(
            bitrate=64000,
            user_limit=0,
            rtc_region=None,
            video_quality_mode=1,
            last_message_id=_opt_str(channel.last_message_id),
        )
    return data


def guild_payload(
    world: World, guild: Guild, *, gateway: bool = False, joined: bool = False
) -> JSON:
    """A guild object; with ``gateway=True`` the GUILD_CREATE extras (channels, members…)."""
    data: JSON = {
        "id": str(guild.id),
        "name": guild.name,
        "icon": None,
        "splash": None,
        "discovery_splash": None,
        "banner": None,
        "owner_id": str(guild.owner_id),
        "afk_channel_id": None,
        "afk_timeout": 300,
        "verification_level": 0,
        "default_message_notifications": 0,
        "explicit_content_filter": 0,
        "roles": [role_payload(r) for r in guild.roles.values()],
        "emojis": [],
        "stickers": [],
        "features": [],
        "mfa_level": 0,
        "application_id": None,
        "system_channel_id": str(guild.system_channel_id) if guild.system_channel_id else None,
        "system_channel_flags": 0,
        "rules_channel_id": None,
        "public_updates_channel_id": None,
        "safety_alerts_channel_id": None,
        "vanity_url_code": None,
        "description": None,
        "premium_tier": guild.premium_tier,
        "premium_subscription_count": 0,
        "preferred_locale": guild.preferred_locale,
        "nsfw_level": 0,
        "premium_progress_bar_enabled": False,
        "max_members": 500000,
        "max_video_channel_users": 25,
    }
    if gateway and not joined:
        # A guild that becomes available (after READY's unavailable stubs) says so; the
        # GUILD_CREATE of a guild just joined carries no `unavailable` (docs: topics/
        # gateway-events.mdx, "Guild Create": unavailable is optional), which is how
        # discord.py tells on_guild_join from on_guild_available.
        data["unavailable"] = False
    if gateway:
        channels = [c for c in guild.channels.values() if not c.is_thread]
        threads = [c for c in guild.channels.values() if c.is_thread and not c.archived]
        data.update(
            joined_at=iso(snowflake_time(guild.id)),
            large=False,
            member_count=len(guild.members),
            voice_states=[],
            members=[member_payload(m) for m in guild.members.values()],
            channels=[channel_payload(world, c) for c in channels],
            threads=[channel_payload(world, c) for c in threads],
            presences=[],
            stage_instances=[],
            guild_scheduled_events=[],
            soundboard_sounds=[],
        )
    return data


def attachment_payload(attachment: Attachment) -> JSON:
    """An attachment object pointing at the emulator's CDN."""
    data: JSON = {
        "id": str(attachment.id),
        "filename": attachment.filename,
        "size": attachment.size,
        "url": attachment.url,
        "proxy_url": attachment.proxy_url,
        "flags": attachment.flags,
    }
    optional = {
        "content_type": attachment.content_type,
        "duration_secs": attachment.duration_secs,
        "waveform": attachment.waveform,
        "width": attachment.width,
        "height": attachment.height,
        "description": attachment.description,
        "title": attachment.title,
    }
    data.update({k: v for k, v in optional.items() if v is not None})
    if attachment.ephemeral:
        data["ephemeral"] = True
    return data


def message_payload(
    world: World, message: Message, *, referenced: bool = True, gateway: bool = False
) -> JSON:
    """A message object as in REST responses; with ``gateway``, as in MESSAGE_CREATE/UPDATE.

    Only the gateway events carry the author's ``member`` (docs: topics/gateway-events.mdx,
    "Message Create" extra fields); the REST message object has none (spec:
    schemas/MessageResponse), so a message read from history has an author without roles.
    """
    data: JSON = {
        "id": str(message.id),
        "channel_id": str(message.channel_id),
        "type": message.type,
        "author": user_payload(message.author),
        "content": message.content,
        "timestamp": iso(message.created_at),
        "edited_timestamp": iso(message.edited_at),
        "tts": message.tts,
        "mention_everyone": message.mention_everyone,
        "mentions": [_mention_payload(world, message, u) for u in message.mention_user_ids],
        "mention_roles": [str(r) for r in message.mention_role_ids],
        "attachments": [attachment_payload(a) for a in message.attachments],
        "embeds": message.embeds,
        "components": message.components,
        "pinned": message.pinned,
        "flags": message.flags,
    }
    if message.guild_id is not None:
        data["guild_id"] = str(message.guild_id)
        member = world.member(message.guild_id, message.author.id)
        if gateway and member is not None and message.webhook_id is None:
            data["member"] = member_payload(member, with_user=False)
    reactions = message.current_reactions()
    if reactions:
        data["reactions"] = [
            {
                "emoji": _emoji_payload(emoji),
                "count": len(users),
                "count_details": {"burst": 0, "normal": len(users)},
                "me": world.bot_user.id in users,
                "me_burst": False,
                "burst_colors": [],
            }
            for emoji, users in reactions.items()
        ]
    optional = {
        "webhook_id": _opt_str(message.webhook_id),
        "application_id": _opt_str(message.application_id),
        "message_reference": message.message_reference,
        "message_snapshots": message.message_snapshots,
        "interaction_metadata": message.interaction_metadata,
        "interaction": message.interaction,
        "nonce": message.nonce,
    }
    data.update({k: v for k, v in optional.items() if v is not None})
    if referenced and message.message_reference and message.reply_to_id is not None:
        target = world.messages.get(message.reply_to_id)
        data["referenced_message"] = (
            None
            if target is None or target.deleted
            else message_payload(world, target, referenced=False)
        )
    return data


def snapshot_payload(message: Message) -> JSON:
    """A ``message_snapshots`` entry (the forwarded copy of ``message``)."""
    return {
        "message": {
            "type": message.type,
            "content": message.content,
            "embeds": message.embeds,
            "attachments": [attachment_payload(a) for a in message.attachments],
            "timestamp": iso(message.created_at),
            "edited_timestamp": iso(message.edited_at),
            "flags": message.flags,
            "mentions": [],
            "mention_roles": [],
            "components": message.components,
        }
    }


def _emoji_payload(emoji: str) -> JSON:
    if ":" in emoji:
        name, _, emoji_id = emoji.partition(":")
        return {"id": emoji_id, "name": name}
    return {"id": None, "name": emoji}


def reaction_event_payload(world: World, message: Message, user_id: int, emoji: str) -> JSON:
    """MESSAGE_REACTION_ADD / _REMOVE data."""
    data: JSON = {
        "user_id": str(user_id),
        "channel_id": str(message.channel_id),
        "message_id": str(message.id),
        "emoji": _emoji_payload(emoji),
        "burst": False,
        "burst_colors": [],
        "type": 0,
        "message_author_id": str(message.author.id),
    }
    if message.guild_id is not None:
        data["guild_id"] = str(message.guild_id)
        member = world.member(message.guild_id, user_id)
        if member is not None:
            data["member"] = member_payload(member)
    return data


def _mention_payload(world: World, message: Message, user_id: int) -> JSON:
    user = world.users[user_id]
    data = user_payload(user)
    if message.guild_id is not None:
        member = world.member(message.guild_id, user_id)
        if member is not None:
            data["member"] = member_payload(member, with_user=False)
    return data


def _opt_str(value: int | None) -> str | None:
    return None if value is None else str(value)
