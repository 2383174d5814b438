"""Logging for the bot and the CLI, with a last line of defence against leaked secrets."""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable, Mapping
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Literal

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

    def redact(self, text: str) -> str:
        redacted = _DISCORD_TOKEN.sub("[redacted]", text)
        for secret in self._secrets:
            redacted = redacted.replace(secret, "[redacted]")
        return redacted

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = self.redact(message)
        if redacted != message or record.args:
            # The message as it will be shown: the formatter then need not format it again.
            record.msg = redacted
            record.args = None
        if record.exc_info and not record.exc_text:
            # A traceback quotes exception messages (a URL with its password, a header): it
            # is formatted here, redacted, and every formatter then shows this text.
            record.exc_text = self.redact(_TRACEBACKS.formatException(record.exc_info))
        return True


_TRACEBACKS = logging.Formatter()

#: Fields a log line is about (guild, case, provider, job id), set by the scan service for
#: everything logged while it runs a scan; a log call's `extra=` of the same names wins.
CONTEXT_FIELDS = ("guild", "case", "provider", "job_id")
_NO_CONTEXT: Mapping[str, object] = MappingProxyType({})
_context: ContextVar[Mapping[str, object]] = ContextVar(
    "spoofwatch_log_context", default=_NO_CONTEXT
)


def bind(**fields: object) -> Token[Mapping[str, object]]:
    """Add `fields` to the context of this task's log lines until `unbind` (or the task ends)."""
    return _context.set({**_context.get(), **fields})


def unbind(token: Token[Mapping[str, object]]) -> None:
    """Restore the log context to what it was before the `bind` that returned `token`."""
    _context.reset(token)


class JSONFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the context fields a line
    has (`CONTEXT_FIELDS`), and the traceback as `exception`. The message and traceback were
    redacted by `RedactingFilter`; string fields from the context are redacted here."""

    def __init__(self, redactor: RedactingFilter | None = None) -> None:
        super().__init__()
        self._redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        context = _context.get()
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, context.get(name))
            if value is None:
                continue
            if not isinstance(value, int | float | bool):
                value = str(value)
                if self._redactor is not None:
                    value = self._redactor.redact(value)
            entry[name] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


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


def setup_logging(
    level: str = "INFO",
    secrets: Iterable[str] = (),
    log_format: Literal["text", "json"] = "text",
) -> RedactingFilter:
    """Log to stderr (as text, or one JSON object per line); returns the redacting filter so
    more secrets can be registered."""
    handler = logging.StreamHandler(sys.stderr)
    redactor = RedactingFilter(secrets)
    if log_format == "json":
        handler.setFormatter(JSONFormatter(redactor))
    else:
        handler.setFormatter(
            _Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S")
        )
    handler.addFilter(redactor)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # discord.py's gateway chatter is useful only when debugging the connection.
    logging.getLogger("discord").setLevel(max(logging.INFO, root.level))
    return redactor
