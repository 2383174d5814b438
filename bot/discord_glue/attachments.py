"""Discord glue shared by the features that scan: which attachments, and the scan request."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import PurePosixPath

import discord

from bot.guild_config import GuildConfig
from bot.scanning import MediaSource, ScanLimits, ScanRequest, provider_meta
from bot.settings import MIB, Settings
from bot.storage import NO_GUILD, NewScan, Trigger
from bot.verdict import MediaKind, ProviderName

# Used only when Discord sends no content type; the probe decides in the end.
_AUDIO_SUFFIXES = {".ogg", ".oga", ".opus", ".mp3", ".wav", ".m4a", ".flac", ".aac", ".amr"}
_VIDEO_SUFFIXES = {".mp4", ".mov", ".webm", ".mkv", ".m4v", ".avi", ".3gp"}


@dataclass(frozen=True, slots=True)
class Candidate:
    """An attachment that looks like media, and what it looks like (checked later by probing)."""

    attachment: discord.Attachment
    kind: MediaKind
    #: The message that carried it: the forwarded snapshot's origin is not fetchable.
    voice_flag: bool


def guess_kind(attachment: discord.Attachment, *, voice_flag: bool) -> MediaKind | None:
    """What an attachment claims to be, from Discord's metadata. None = not media."""
    content_type = (attachment.content_type or "").split(";")[0].strip().lower()
    if voice_flag or attachment.is_voice_message():
        return MediaKind.VOICE
    if content_type.startswith("audio/"):
        return MediaKind.AUDIO
    if content_type.startswith("video/"):
        return MediaKind.VIDEO
    if content_type:
        return None
    suffix = PurePosixPath(attachment.filename).suffix.lower()
    if suffix in _AUDIO_SUFFIXES:
        return MediaKind.AUDIO
    if suffix in _VIDEO_SUFFIXES:
        return MediaKind.VIDEO
    return None


def media_candidates(message: discord.Message) -> list[Candidate]:
    """Media attachments of a message, including files inside forwarded messages."""
    voice = message.flags.voice
    found = list(_candidates(message.attachments, voice_flag=voice))
    for snapshot in getattr(message, "message_snapshots", None) or ():
        snap_voice = bool(snapshot.flags.voice) if snapshot.flags else False
        found.extend(_candidates(snapshot.attachments, voice_flag=snap_voice))
    return found


def _candidates(
    attachments: Iterable[discord.Attachment], *, voice_flag: bool
) -> Iterable[Candidate]:
    for attachment in attachments:
        kind = guess_kind(attachment, voice_flag=voice_flag)
        if kind is not None:
            yield Candidate(attachment, kind, voice_flag or attachment.is_voice_message())


def scan_limits(settings: Settings, config: GuildConfig) -> ScanLimits:
    """The operator's limits, tightened (never loosened) by the guild's own settings."""
    max_bytes = settings.max_file_bytes
    if config.max_file_mb is not None:
        max_bytes = min(max_bytes, int(config.max_file_mb * MIB))
    max_duration = settings.max_duration_s
    if config.max_duration_s is not None:
        max_duration = min(max_duration, config.max_duration_s)
    return ScanLimits(
        max_file_bytes=max_bytes, max_duration_s=max_duration, daily_quota=config.daily_quota
    )


def guild_provider(
    settings: Settings, config: GuildConfig, available: Iterable[ProviderName]
) -> ProviderName:
    """The guild's chosen provider when it is configured, else the operator's default."""
    if config.provider is not None and config.provider in set(available):
        return config.provider
    return settings.provider


def scan_request(
    candidate: Candidate,
    *,
    message: discord.Message | None,
    guild_id: int | None,
    channel_id: int | None,
    trigger: Trigger,
    requested_by: int | None,
    provider: ProviderName,
    limits: ScanLimits,
    config: GuildConfig,
    paid_transcripts: bool,
) -> ScanRequest:
    """The scan of one attachment. `paid_transcripts` is the operator's consent to pay for them."""
    attachment = candidate.attachment
    new = NewScan(
        guild_id=guild_id or NO_GUILD,
        channel_id=channel_id,
        message_id=message.id if message else None,
        author_id=message.author.id if message else requested_by,
        jump_url=message.jump_url if message else None,
        attachment_id=attachment.id,
        filename=attachment.filename,
        content_type=attachment.content_type,
        size=attachment.size,
        trigger=trigger,
        requested_by=requested_by,
        provider=provider,
        source_url=attachment.url,
    )
    return ScanRequest(
        new=new,
        source=MediaSource(url=attachment.url),
        limits=limits,
        voice_flag=candidate.voice_flag,
        declared_duration_s=attachment.duration,
        want_transcript=paid_transcripts and (config.show_transcripts or config.store_transcripts),
        want_generator=config.generator_detection,
        want_visual=config.video_faces,
        store_transcript=config.store_transcripts,
        meta=provider_meta(
            guild_id=guild_id,
            channel_id=channel_id,
            message_id=message.id if message else None,
            attachment_id=attachment.id,
        ),
    )
