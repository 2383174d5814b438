"""The bot's log lines: secrets redacted, timestamps right (the formatter reuses them)."""

from __future__ import annotations

import logging

from bot.logging_setup import RedactingFilter, _Formatter

FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def record(message: str, *args: object, created: float = 1_763_726_400.25) -> logging.LogRecord:
    made = logging.LogRecord("bot.scanning", logging.INFO, __file__, 1, message, args, None)
    made.created = created
    return made


def test_each_second_gets_its_own_timestamp() -> None:
    """Fails if a timestamp formatted for one second is shown on a record of another."""
    formatter = _Formatter(FORMAT, "%Y-%m-%d %H:%M:%S")
    plain = logging.Formatter(FORMAT, "%Y-%m-%d %H:%M:%S")
    for created in (1_763_726_400.25, 1_763_726_400.99, 1_763_726_401.0, 1_763_726_399.5):
        line = record("case %s done", 7, created=created)
        assert formatter.format(line) == plain.format(record("case %s done", 7, created=created))


def test_redaction_formats_the_message_once_and_keeps_it() -> None:
    """Fails if filtering changes what a log line says, or leaves a secret in it."""
    redactor = RedactingFilter(["sekrit-api-key"])
    formatter = _Formatter(FORMAT, "%Y-%m-%d %H:%M:%S")
    plain = record("case %s done by %s", 7, "behavioral_signals")
    leaky = record("calling with key %s", "sekrit-api-key")
    assert redactor.filter(plain) and redactor.filter(leaky)
    assert plain.getMessage() == "case 7 done by behavioral_signals"
    assert leaky.getMessage() == "calling with key [redacted]"
    shown = formatter.format(plain)
    assert shown.endswith("INFO    bot.scanning: case 7 done by behavioral_signals")
