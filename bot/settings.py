"""Operator settings, from the environment and `.env` (names are a stable interface)."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from bot.errors import SettingsError
from bot.storage._models import ShardFilter
from bot.verdict import ProviderName

DEFAULT_MEDIA_HOSTS = ("cdn.discordapp.com", "media.discordapp.net")
MIB = 1024 * 1024


class Settings(BaseSettings):
    """Everything an operator can set. Secrets are `SecretStr` and never printed."""

    # Each setting is read from SPOOFWATCH_<FIELD NAME> (any case), except those with a
    # `validation_alias`: the Discord token and the providers' own credentials keep the names
    # their vendors' tools use, and the SQLite file is SPOOFWATCH_DB. The names are an
    # interface (tests/bot/test_settings.py lists them); code passes field names.
    model_config = SettingsConfigDict(
        env_prefix="SPOOFWATCH_",
        env_file=".env",
        env_file_encoding="utf-8",
        env_ignore_empty=True,
        extra="ignore",
        populate_by_name=True,
        frozen=True,
    )

    discord_token: SecretStr | None = Field(default=None, validation_alias="DISCORD_TOKEN")
    provider: ProviderName = ProviderName.BEHAVIORAL_SIGNALS

    behavioralsignals_cid: str | None = Field(
        default=None, validation_alias="BEHAVIORALSIGNALS_CID"
    )
    behavioralsignals_api_key: SecretStr | None = Field(
        default=None, validation_alias="BEHAVIORALSIGNALS_API_KEY"
    )
    behavioralsignals_api_url: str = Field(
        default="https://api.behavioralsignals.com/v5", validation_alias="BEHAVIORALSIGNALS_API_URL"
    )
    behavioralsignals_upload_timeout_s: float = Field(
        # How long an upload's answer may take once the file is sent: the SDK's 300 s.
        default=300.0,
        gt=0,
        validation_alias="BEHAVIORALSIGNALS_UPLOAD_TIMEOUT_S",
    )

    resemble_api_key: SecretStr | None = Field(default=None, validation_alias="RESEMBLE_API_KEY")
    resemble_api_url: str = Field(
        default="https://app.resemble.ai/api/v2", validation_alias="RESEMBLE_API_URL"
    )
    resemble_intelligence: bool = False
    resemble_zero_retention: bool = True

    db_path: Path = Field(default=Path("data/spoofwatch.db"), validation_alias="SPOOFWATCH_DB")
    #: postgresql://user:password@host/db: the audit log in PostgreSQL, shared by every
    #: process of a sharded deployment. Unset: SQLite at `db_path`. (A secret: it may hold
    #: the password.)
    database_url: SecretStr | None = None
    allowed_media_hosts: Annotated[tuple[str, ...], NoDecode] = DEFAULT_MEDIA_HOSTS
    dev_guild: int | None = None

    #: Shards across processes: every process of a deployment sets the same count, and
    #: each its own ids. Unset: one process runs every shard Discord recommends.
    shard_count: int | None = Field(default=None, ge=1)
    shard_ids: Annotated[tuple[int, ...] | None, NoDecode] = None

    discord_api_url: str | None = None
    discord_gateway_url: str | None = None
    max_file_mb: float = Field(default=100.0, gt=0)
    max_duration_s: float = Field(default=600.0, gt=0)
    ffmpeg_timeout_s: float = Field(default=120.0, gt=0)
    poll_deadline_s: float = Field(default=300.0, gt=0)
    poll_initial_s: float = Field(default=1.0, gt=0)
    poll_max_interval_s: float = Field(default=5.0, gt=0)
    request_timeout_s: float = Field(default=60.0, gt=0)
    workers: int = Field(
        # Scans downloading, decoding or uploading at once. Once a scan's file is sent it
        # waits for the provider (seconds to minutes) without a worker (`bot.worker_pool`);
        # probing and decoding run in the media worker processes, at most two per CPU at
        # once (the scan service's cap), whatever this says.
        default=16,
        ge=1,
        le=64,
    )
    decoder_processes: int = Field(default_factory=lambda: min(os.cpu_count() or 1, 8), ge=0, le=64)
    catch_up_messages: int = Field(default=100, ge=0, le=1000)
    catch_up_hours: float = Field(default=24.0, ge=0)
    search_mark_delay_s: float = Field(default=1.5, ge=0, le=60)
    combine_replies: bool = True
    credential_check_s: float = Field(
        # How often the providers are asked whether they still take the credentials; a
        # refusal goes to the log and the mod-logs. 0 turns the periodic check off.
        default=3600.0,
        ge=0,
    )
    temp_dir: Path | None = None
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"
    #: Serve /metrics (Prometheus) and /healthz on this port; unset: no server at all.
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    #: Loopback unless the operator says otherwise: the metrics name guilds' activity.
    metrics_host: str = "127.0.0.1"

    @field_validator("allowed_media_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(h.strip().lower() for h in value.split(",") if h.strip())
        return value

    @field_validator("allowed_media_hosts")
    @classmethod
    def _hosts_not_empty(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("must name at least one host")
        return value

    @field_validator("shard_ids", mode="before")
    @classmethod
    def _split_shard_ids(cls, value: object) -> object:
        if isinstance(value, str):
            parts = [p.strip() for p in value.split(",") if p.strip()]
            if not parts:
                return None  # an empty line in .env means "not set"
            try:
                return tuple(int(p) for p in parts)
            except ValueError:
                raise ValueError("must be shard numbers separated by commas, e.g. 0,1") from None
        return value

    @model_validator(mode="after")
    def _shards_fit(self) -> Settings:
        ids = self.shard_ids
        if ids is None:
            return self
        if self.shard_count is None:
            raise ValueError(
                "SPOOFWATCH_SHARD_IDS needs SPOOFWATCH_SHARD_COUNT (the shards of the whole "
                "deployment, the same in every process)"
            )
        wrong = [i for i in ids if not 0 <= i < self.shard_count]
        if wrong:
            raise ValueError(
                f"SPOOFWATCH_SHARD_IDS: shard {wrong[0]} does not exist with "
                f"SPOOFWATCH_SHARD_COUNT={self.shard_count} (shards are 0 to "
                f"{self.shard_count - 1})"
            )
        if len(set(ids)) != len(ids):
            raise ValueError("SPOOFWATCH_SHARD_IDS: a shard is named twice")
        return self

    @field_validator("database_url", mode="before")
    @classmethod
    def _postgres_only(cls, value: object) -> object:
        if value == "":
            return None  # an empty line in .env means "not set"
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        if isinstance(text, str) and not text.startswith(("postgresql://", "postgres://")):
            raise ValueError("must be a postgresql:// URL")
        return value

    @field_validator("behavioralsignals_cid", mode="before")
    @classmethod
    def _numeric_project_id(cls, value: object) -> object:
        """The project id is a number (8 digits in every example: docs, "Create a project
        and API token"); a project name or a pasted key would fail every scan later."""
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if isinstance(value, str):
            value = value.strip()
            if value == "":
                return None
            if not value.isascii() or not value.isdigit():
                raise ValueError(
                    "must be the numeric Project ID from the Behavioral Signals portal "
                    "(digits only), not a project name or an API key"
                )
        return value

    @field_validator("behavioralsignals_api_url", "resemble_api_url", "discord_api_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        """A base URL with http(s) and a host: a bare host name or a typo would only show as
        a failed connection at the first scan."""
        if value is None:
            return None
        parsed = urlsplit(value.strip())
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f"must be an http:// or https:// URL, not {value!r}")
        return value.strip()

    @field_validator("discord_gateway_url")
    @classmethod
    def _ws_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parsed = urlsplit(value.strip())
        if parsed.scheme not in ("ws", "wss") or not parsed.hostname:
            raise ValueError(f"must be a ws:// or wss:// URL, not {value!r}")
        return value.strip()

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @property
    def audit_log_location(self) -> Path | str:
        """Where the audit log lives: the PostgreSQL URL when set, else the SQLite file."""
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        return self.db_path

    @property
    def shard_filter(self) -> ShardFilter | None:
        """The guilds this process owns; None when it runs every shard (owns them all)."""
        if self.shard_ids is None or self.shard_count is None:
            return None
        if len(self.shard_ids) == self.shard_count:
            return None
        return ShardFilter(count=self.shard_count, ids=frozenset(self.shard_ids))

    @property
    def max_file_bytes(self) -> int:
        return int(self.max_file_mb * MIB)

    def missing_provider_settings(self, provider: ProviderName) -> list[str]:
        """The environment variables a provider needs that are unset."""
        if provider is ProviderName.BEHAVIORAL_SIGNALS:
            needed = {
                "BEHAVIORALSIGNALS_CID": self.behavioralsignals_cid,
                "BEHAVIORALSIGNALS_API_KEY": self.behavioralsignals_api_key,
            }
        else:
            needed = {"RESEMBLE_API_KEY": self.resemble_api_key}
        return [name for name, value in needed.items() if not value]

    def require_provider(self, provider: ProviderName | None = None) -> ProviderName:
        """Check that `provider` (default: SPOOFWATCH_PROVIDER) has its credentials."""
        chosen = provider or self.provider
        missing = self.missing_provider_settings(chosen)
        if missing:
            raise SettingsError(
                f"The provider is {chosen.value!r} but "
                f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set."
            )
        return chosen

    def configured_providers(self) -> list[ProviderName]:
        """Providers whose credentials are all present (a guild may pick among them)."""
        return [p for p in ProviderName if not self.missing_provider_settings(p)]

    def require_discord_token(self) -> SecretStr:
        if self.discord_token is None or not self.discord_token.get_secret_value():
            raise SettingsError(
                "DISCORD_TOKEN is not set: the bot needs its token from the Developer Portal "
                "(Bot → Reset Token)."
            )
        return self.discord_token


def is_loopback_host(host: str) -> bool:
    """True for hosts that never leave this machine (tests download media from them)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# Field name → the environment variable an operator would set, for error messages.
_ENV_NAMES = {
    name: (
        field.validation_alias
        if isinstance(field.validation_alias, str)
        else f"{Settings.model_config.get('env_prefix', '')}{name}".upper()
    )
    for name, field in Settings.model_fields.items()
}


def load_settings(env_file: str | Path | None = ".env", **overrides: Any) -> Settings:
    """Build `Settings`, turning validation errors into one `SettingsError` naming variables."""
    try:
        return Settings(_env_file=env_file, **overrides)
    except ValidationError as exc:
        raise SettingsError(_describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors(include_url=False):
        loc = error.get("loc") or ()
        field = str(loc[0]) if loc else ""
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        if field and field in _ENV_NAMES:
            lines.append(f"{_ENV_NAMES[field]}: {message}")
        elif field:
            lines.append(f"{field.upper()}: {message}")
        else:
            lines.append(message)
    return "Invalid configuration:\n  " + "\n  ".join(lines)


def settings_env_names() -> Mapping[str, str]:
    """Field name → environment variable name (used by the `.env.example` meta-test)."""
    return dict(_ENV_NAMES)
