"""Clients of the deepfake-detection services."""

from __future__ import annotations

import aiohttp

from bot.detectors._base import (
    Detector,
    PollPolicy,
    RetryPolicy,
    Submission,
    SubmitOptions,
    Upload,
    VendorAck,
)
from bot.detectors.behavioral_signals import BehavioralSignalsClient
from bot.detectors.resemble import ResembleClient
from bot.settings import Settings
from bot.verdict import ProviderName

__all__ = [
    "BehavioralSignalsClient",
    "Detector",
    "PollPolicy",
    "ResembleClient",
    "RetryPolicy",
    "Submission",
    "SubmitOptions",
    "Upload",
    "VendorAck",
    "build_detector",
]


def build_detector(
    settings: Settings,
    http_session: aiohttp.ClientSession,
    provider: ProviderName | None = None,
) -> Detector:
    """The client for `provider` (default: SPOOFWATCH_PROVIDER), or SettingsError naming
    the missing credentials."""
    chosen = settings.require_provider(provider)
    retry = RetryPolicy()
    poll = PollPolicy(
        initial_s=settings.poll_initial_s,
        max_interval_s=max(settings.poll_initial_s, settings.poll_max_interval_s),
        deadline_s=settings.poll_deadline_s,
    )
    if chosen is ProviderName.BEHAVIORAL_SIGNALS:
        # require_provider has checked both; the asserts tell the type checker.
        assert settings.behavioralsignals_cid is not None
        assert settings.behavioralsignals_api_key is not None
        return BehavioralSignalsClient(
            http_session,
            cid=settings.behavioralsignals_cid,
            api_key=settings.behavioralsignals_api_key,
            base_url=settings.behavioralsignals_api_url,
            retry=retry,
            poll=poll,
            request_timeout_s=settings.request_timeout_s,
            upload_read_timeout_s=settings.behavioralsignals_upload_timeout_s,
        )
    assert settings.resemble_api_key is not None
    return ResembleClient(
        http_session,
        api_key=settings.resemble_api_key,
        base_url=settings.resemble_api_url,
        retry=retry,
        poll=poll,
        request_timeout_s=settings.request_timeout_s,
        zero_retention=settings.resemble_zero_retention,
    )
