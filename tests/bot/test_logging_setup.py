"""The bot's log lines: secrets redacted, timestamps right (the formatter reuses them)."""

from __future__ import annotations

import io
import json
import logging

import pytest

from bot.logging_setup import (
    JSONFormatter,
    RedactingFilter,
    _Formatter,
    bind,
    setup_logging,
    unbind,
)
from testkit.e2e import MakeSpoofwatch
from testkit.media_factory import MediaFiles

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


# --- SPOOFWATCH_LOG_FORMAT=json ----------------------------------------------------------------

SECRET = "sk-live-9f8e7d6c5b4a"


def json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_json_lines_carry_fields_and_never_a_secret(capsys: pytest.CaptureFixture[str]) -> None:
    """One JSON object per line with time, level, logger, message and the scan's fields;
    fails if the secret shows anywhere (message, argument, traceback, context field)."""
    setup_logging("INFO", [SECRET], "json")
    try:
        log = logging.getLogger("bot.scanning")
        token = bind(guild=42, case=7, provider="resemble")
        bind(job_id=f"job-{SECRET}")
        log.info("uploading with key %s", SECRET)
        try:
            raise RuntimeError(f"GET https://api/?key={SECRET} failed")
        except RuntimeError:
            log.exception("request failed")
        unbind(token)
        log.warning("after the scan", extra={"case": 9})
    finally:
        logging.getLogger().handlers.clear()
    err = capsys.readouterr().err
    assert SECRET not in err
    first, second, third = json_lines(err)
    assert first["level"] == "INFO" and first["logger"] == "bot.scanning"
    assert first["message"] == "uploading with key [redacted]"
    assert {first["guild"], first["case"], first["provider"]} == {42, 7, "resemble"}
    assert first["job_id"] == "job-[redacted]"
    assert str(first["time"]).endswith("+00:00")
    assert "RuntimeError" in str(second["exception"])
    assert "guild" not in third and third["case"] == 9


async def test_scan_log_lines_name_guild_case_provider_and_job(
    make_spoofwatch: MakeSpoofwatch, media: MediaFiles
) -> None:
    """The scan service's own lines: fails if the verdict's line lacks the job id or the
    case it is about."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JSONFormatter())
    scanning_log = logging.getLogger("bot.scanning")
    scanning_log.addHandler(handler)
    previous = scanning_log.level
    scanning_log.setLevel(logging.INFO)
    try:
        async with make_spoofwatch() as sw:
            await sw.reply_to(await sw.post(media.voice_ogg, voice=True))
    finally:
        scanning_log.removeHandler(handler)
        scanning_log.setLevel(previous)
    [done] = [line for line in json_lines(stream.getvalue()) if " done: " in str(line["message"])]
    assert done["case"] == 1
    assert done["provider"] == "resemble"
    assert done["guild"] == sw.emu.guild.id
    assert done["job_id"]
