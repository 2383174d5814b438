"""Logging for the bot and the CLI, with a last line of defence against leaked secrets."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable

# A Discord bot token: three dot-separated base64url parts. Redacted wherever it appears,
# even if some library logs a header by accident.
_DISCORD_TOKEN = re.compile(r"[MNO][A-Za-z\d_-]{23,27}\.[A-Za-z\d_-]{6}\.[A-Za-z\d_-]{27,40}")


class RedactingFilter(logging.Filter):
    """Replaces known secrets (and anything shaped like a bot token) in log records."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets = [s for s in secrets if s and len(s) >= 4]

    def add_secrets(self, secrets: Iterable[str]) -> None:
        self._secrets.extend(s for s in secrets if s and len(s) >= 4)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = _DISCORD_TOKEN.sub("[redacted]", message)
        for secret in self._secrets:
            redacted = redacted.replace(secret, "[redacted]")
        if redacted != message or record.args:
            # The message as it will be shown: the formatter then need not format it again.
            record.msg = redacted
            record.args = None
        return True


class _Formatter(logging.Formatter):
    """A `logging.Formatter` that formats each second's timestamp once (its format shows
    whole seconds): `time.strftime` was a fifth of the cost of a log line."""

    def __init__(self, fmt: str, datefmt: str) -> None:
        super().__init__(fmt, datefmt)
        self._stamp: tuple[int, str] = (-1, "")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        second = int(record.created)
        cached_second, text = self._stamp
        if second != cached_second:
            text = super().formatTime(record, datefmt)
            self._stamp = (second, text)
        return text


def setup_logging(level: str = "INFO", secrets: Iterable[str] = ()) -> RedactingFilter:
    """Log to stderr; returns the redacting filter so more secrets can be registered."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        _Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S")
    )
    redactor = RedactingFilter(secrets)
    handler.addFilter(redactor)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # discord.py's gateway chatter is useful only when debugging the connection.
    logging.getLogger("discord").setLevel(max(logging.INFO, root.level))
    return redactor
