"""Operator settings: every environment variable name is a stable interface.

The names below are those `bot/settings.py` read before the `SPOOFWATCH_` prefix replaced
the per-field aliases (and those `.env.example` and the README document); none may change.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot.settings import Settings, settings_env_names

#: Field → (environment variable, a value to set, what the field then holds, or how to read it).
NAMES: dict[str, tuple[str, str, Any]] = {
    "discord_token": ("DISCORD_TOKEN", "tok", lambda s: s.get_secret_value() == "tok"),
    "provider": ("SPOOFWATCH_PROVIDER", "resemble", lambda s: s.value == "resemble"),
    "behavioralsignals_cid": ("BEHAVIORALSIGNALS_CID", "10000001", "10000001"),
    "behavioralsignals_api_key": (
        "BEHAVIORALSIGNALS_API_KEY",
        "key",
        lambda s: s.get_secret_value() == "key",
    ),
    "behavioralsignals_api_url": ("BEHAVIORALSIGNALS_API_URL", "https://bs.test/v5", None),
    "behavioralsignals_upload_timeout_s": ("BEHAVIORALSIGNALS_UPLOAD_TIMEOUT_S", "12", 12.0),
    "resemble_api_key": ("RESEMBLE_API_KEY", "rk", lambda s: s.get_secret_value() == "rk"),
    "resemble_api_url": ("RESEMBLE_API_URL", "https://rs.test/api/v2", None),
    "resemble_intelligence": ("SPOOFWATCH_RESEMBLE_INTELLIGENCE", "true", True),
    "resemble_zero_retention": ("SPOOFWATCH_RESEMBLE_ZERO_RETENTION", "false", False),
    "db_path": ("SPOOFWATCH_DB", "x/audit.db", Path("x/audit.db")),
    "database_url": (
        "SPOOFWATCH_DATABASE_URL",
        "postgresql://u@h/d",
        lambda s: s.get_secret_value() == "postgresql://u@h/d",
    ),
    "allowed_media_hosts": (
        "SPOOFWATCH_ALLOWED_MEDIA_HOSTS",
        "a.test, B.test",
        ("a.test", "b.test"),
    ),
    "dev_guild": ("SPOOFWATCH_DEV_GUILD", "42", 42),
    "shard_count": ("SPOOFWATCH_SHARD_COUNT", "3", 3),
    "shard_ids": ("SPOOFWATCH_SHARD_IDS", "0", (0,)),
    "discord_api_url": ("SPOOFWATCH_DISCORD_API_URL", "http://127.0.0.1:1/api", None),
    "discord_gateway_url": ("SPOOFWATCH_DISCORD_GATEWAY_URL", "ws://127.0.0.1:1/", None),
    "max_file_mb": ("SPOOFWATCH_MAX_FILE_MB", "7", 7.0),
    "max_duration_s": ("SPOOFWATCH_MAX_DURATION_S", "8", 8.0),
    "ffmpeg_timeout_s": ("SPOOFWATCH_FFMPEG_TIMEOUT_S", "9", 9.0),
    "poll_deadline_s": ("SPOOFWATCH_POLL_DEADLINE_S", "10", 10.0),
    "poll_initial_s": ("SPOOFWATCH_POLL_INITIAL_S", "0.5", 0.5),
    "poll_max_interval_s": ("SPOOFWATCH_POLL_MAX_INTERVAL_S", "2", 2.0),
    "request_timeout_s": ("SPOOFWATCH_REQUEST_TIMEOUT_S", "11", 11.0),
    "workers": ("SPOOFWATCH_WORKERS", "3", 3),
    "decoder_processes": ("SPOOFWATCH_DECODER_PROCESSES", "0", 0),
    "catch_up_messages": ("SPOOFWATCH_CATCH_UP_MESSAGES", "5", 5),
    "catch_up_hours": ("SPOOFWATCH_CATCH_UP_HOURS", "2", 2.0),
    "search_mark_delay_s": ("SPOOFWATCH_SEARCH_MARK_DELAY_S", "0", 0.0),
    "combine_replies": ("SPOOFWATCH_COMBINE_REPLIES", "false", False),
    "credential_check_s": ("SPOOFWATCH_CREDENTIAL_CHECK_S", "0", 0.0),
    "temp_dir": ("SPOOFWATCH_TEMP_DIR", "/var/tmp/sw", Path("/var/tmp/sw")),
    "log_level": ("SPOOFWATCH_LOG_LEVEL", "debug", "DEBUG"),
    "log_format": ("SPOOFWATCH_LOG_FORMAT", "JSON", "json"),
    "metrics_port": ("SPOOFWATCH_METRICS_PORT", "9100", 9100),
    "metrics_host": ("SPOOFWATCH_METRICS_HOST", "0.0.0.0", "0.0.0.0"),
}


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No Spoofwatch variable from the developer's shell leaks into the parsed settings."""
    for name, _, _ in NAMES.values():
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


def _holds(settings: Settings, field: str) -> bool:
    _, value, expected = NAMES[field]
    got = getattr(settings, field)
    if expected is None:
        return bool(got == value)
    if callable(expected):
        return bool(expected(got))
    return bool(got == expected)


def test_every_setting_keeps_its_variable_name() -> None:
    """Fails if a setting is added, renamed or read from another variable than before."""
    assert dict(settings_env_names()) == {field: env for field, (env, _, _) in NAMES.items()}


@pytest.mark.parametrize("field", sorted(NAMES))
def test_each_variable_sets_its_setting_from_the_environment(
    field: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fails if a documented variable no longer reaches its setting from the environment."""
    env, value, _ = NAMES[field]
    monkeypatch.setenv(env, value)
    if field == "shard_ids":
        monkeypatch.setenv("SPOOFWATCH_SHARD_COUNT", "1")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert _holds(settings, field), getattr(settings, field)


def test_every_variable_sets_its_setting_from_a_dotenv_file(tmp_path: Path) -> None:
    """Fails if a variable is read from the environment but not from `.env`."""
    dotenv = tmp_path / ".env"
    dotenv.write_text("".join(f"{env}={value}\n" for env, value, _ in NAMES.values()))
    settings = Settings(_env_file=dotenv)  # type: ignore[call-arg]
    assert [f for f in NAMES if not _holds(settings, f)] == []


def test_names_are_read_whatever_their_case(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fails if `spoofwatch_workers` or `discord_token` (lower case) stop being read, as they
    were (variables are matched without regard to case)."""
    monkeypatch.setenv("spoofwatch_workers", "5")
    monkeypatch.setenv("behavioralsignals_cid", "10000002")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert (settings.workers, settings.behavioralsignals_cid) == (5, "10000002")


def test_keywords_use_the_field_names() -> None:
    """Fails if code can no longer build settings by field name (tests, the CLI)."""
    settings = Settings(_env_file=None, workers=4, discord_token="t", db_path="a.db")  # type: ignore[call-arg]
    assert (settings.workers, settings.db_path) == (4, Path("a.db"))
    assert settings.discord_token is not None


def test_bare_field_names_are_not_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Fails if a variable another program may set (`LOG_LEVEL`, `WORKERS`, `PROVIDER`)
    reconfigures Spoofwatch: only the prefixed names count."""
    monkeypatch.setenv("LOG_LEVEL", "ERROR")
    monkeypatch.setenv("WORKERS", "3")
    monkeypatch.setenv("PROVIDER", "resemble")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert (settings.log_level, settings.workers, settings.provider.value) == (
        "INFO",
        16,
        "behavioral_signals",
    )
