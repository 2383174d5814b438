"""Clients of the deepfake-detection services."""

from bot.detectors._base import (
    Detector,
    PollPolicy,
    RetryPolicy,
    Submission,
    SubmitOptions,
    Upload,
)

__all__ = ["Detector", "PollPolicy", "RetryPolicy", "Submission", "SubmitOptions", "Upload"]
