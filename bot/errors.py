"""Spoofwatch's one exception tree.

Every failure a user or operator can meet is a `SpoofwatchError` with a stable `kind`
(stored in the audit log, printed by `scan --json`) and a message that says what happened
and what to do. Low-level errors are chained with `raise ... from`.
"""

from __future__ import annotations

from typing import ClassVar


class SpoofwatchError(Exception):
    """Base of every error Spoofwatch reports to a user or operator."""

    kind: ClassVar[str] = "error"
    #: What the user can do about it; shown under the message.
    hint: ClassVar[str] = ""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class SettingsError(SpoofwatchError):
    """The configuration is missing or invalid; names the variable(s)."""

    kind = "settings"
    hint = "Set the variable in the environment or in .env (see .env.example)."


class InternalError(SpoofwatchError):
    """A bug, not the user's fault; the details go to the log, not to Discord."""

    kind = "internal"
    hint = "This is a problem in Spoofwatch itself; the operator can find it in the log."


class ScanInterrupted(SpoofwatchError):
    kind = "interrupted"
    hint = "The bot stopped before the file was sent for analysis; scan it again."


class ScanLostInFlight(ScanInterrupted):
    """A restart came while the file may have been with the provider, which cannot be asked."""

    kind = "interrupted_in_flight"
    hint = "Use /check on the message (or Apps → Check for deepfake) to scan it again."


class ScanInProgress(SpoofwatchError):
    kind = "in_progress"
    hint = "Wait for the verdict that is already on its way."


# --- media -----------------------------------------------------------------------------


class MediaError(SpoofwatchError):
    """The file itself cannot be scanned."""

    kind = "media"


class FileMissing(MediaError):
    """A local file named on the command line does not exist."""

    kind = "not_found"
    hint = "Check the path."


class EmptyMedia(MediaError):
    kind = "empty"
    hint = "The file has no content. Upload the recording again."


class NotMedia(MediaError):
    kind = "not_media"
    hint = "Only voice messages, audio files and videos can be checked."


class CorruptMedia(MediaError):
    kind = "corrupt"
    hint = "The file could not be decoded. Re-export or re-record it and try again."


class NoAudioTrack(MediaError):
    kind = "no_audio"
    hint = "Spoofwatch checks speech; this file has no sound to analyse."


class MediaTooLarge(MediaError):
    kind = "too_large"
    hint = "Trim or compress the file, or ask an admin to raise the size limit."

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"The file is {_mib(size)}, over the {_mib(limit)} limit.")
        self.size = size
        self.limit = limit


class MediaTooLong(MediaError):
    kind = "too_long"
    hint = "Trim the recording, or ask an admin to raise the duration limit."

    def __init__(self, duration_s: float, limit_s: float) -> None:
        super().__init__(
            f"The recording is {duration_s:.0f} s long, over the {limit_s:.0f} s limit."
        )
        self.duration_s = duration_s
        self.limit_s = limit_s


class MediaTimeout(MediaError):
    kind = "media_timeout"
    hint = "The file took too long to decode. Try a shorter or simpler file."


class DownloadFailed(MediaError):
    kind = "download_failed"
    hint = "The attachment could not be fetched; it may have been deleted. Try again."


class DisallowedHost(MediaError):
    kind = "disallowed_host"
    hint = "Only files hosted on Discord can be checked."


# --- providers -------------------------------------------------------------------------


class ProviderError(SpoofwatchError):
    """The detection service failed; `provider` names it, `status` is the HTTP status if any."""

    kind = "provider"
    hint = "Try again in a few minutes."

    def __init__(self, provider: str, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.provider = provider
        self.status = status


class ProviderAccountError(ProviderError):
    """The provider account is the problem (refused key, no credits): the operator's to fix.

    Members see only `message`, a neutral sentence; what the service said (billing details
    included) is `detail`, which `str()` gives for the log and the audit log. The operator's
    log and the mod-log are told separately (`bot.provider_health`).
    """

    hint = "Spoofwatch's operator has been told; try again later."
    public_message = "The detection service is not available to this bot right now."

    @property
    def message(self) -> str:
        return self.public_message

    @message.setter
    def message(self, value: str) -> None:
        self.detail = value

    def __str__(self) -> str:
        return self.detail


class ProviderAuthError(ProviderAccountError):
    kind = "provider_auth"


class ProviderOutOfCredits(ProviderAccountError):
    kind = "provider_credits"


class ProviderNotFound(ProviderError):
    kind = "provider_not_found"
    hint = "The detection job is unknown to the service; scan the file again."


class ProviderRateLimited(ProviderError):
    kind = "provider_rate_limited"
    hint = "The detection service is busy; try again shortly."

    def __init__(
        self, provider: str, message: str, *, retry_after: float | None, status: int = 429
    ) -> None:
        super().__init__(provider, message, status=status)
        self.retry_after = retry_after


class ProviderUnavailable(ProviderError):
    kind = "provider_unavailable"
    hint = "The detection service is unavailable; try again in a few minutes."


class ProviderTimeout(ProviderError):
    kind = "provider_timeout"
    hint = "The detection service did not finish in time; try again later."


class ProviderProtocolError(ProviderError):
    """The service answered with something that does not match its documented contract."""

    kind = "provider_protocol"
    hint = "The detection service sent an unexpected answer; try again later."


class ProviderRejected(ProviderError):
    """The service refused this input (HTTP 400)."""

    kind = "provider_rejected"
    hint = "The detection service refused this file; try another format."


class ProductRefused(ProviderError):
    """The service refused an optional product this key's plan lacks (HTTP 403), before
    any job was created: the same file may be sent again without it."""

    kind = "provider_product_refused"
    hint = "The detection service's plan lacks this check; the file is checked without it."

    def __init__(self, provider: str, product: str, message: str, *, status: int | None) -> None:
        super().__init__(provider, message, status=status)
        self.product = product


class ProviderJobFailed(ProviderError):
    """The job was accepted but ended in failure at the provider."""

    kind = "provider_job_failed"
    hint = "The detection service could not analyse this file; try again or use another file."


# --- limits ----------------------------------------------------------------------------


class LimitReached(SpoofwatchError):
    """A cost control refused the scan; `resets_at` is a UNIX timestamp."""

    kind = "limit"

    def __init__(self, message: str, *, resets_at: float | None = None) -> None:
        super().__init__(message)
        self.resets_at = resets_at


class QuotaReached(LimitReached):
    kind = "quota"
    hint = "This server's daily scan quota is used up; it resets at midnight UTC."


class CooldownActive(LimitReached):
    kind = "cooldown"
    hint = "You have asked for many checks recently; wait a little."


def error_for_kind(kind: str, message: str) -> SpoofwatchError:
    """Rebuild an error recorded in the audit log (kind + message) for display."""
    classes: dict[str, type[SpoofwatchError]] = {}
    pending: list[type[SpoofwatchError]] = [SpoofwatchError]
    while pending:
        cls = pending.pop()
        classes.setdefault(cls.kind, cls)
        pending.extend(cls.__subclasses__())
    cls = classes.get(kind, SpoofwatchError)
    # Bypass the subclasses' structured constructors: only the recorded text is known.
    error = cls.__new__(cls)
    SpoofwatchError.__init__(error, message)
    if isinstance(error, ProviderError):
        error.provider = ""
        error.status = None
    return error


def _mib(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MiB"
