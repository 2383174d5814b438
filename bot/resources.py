"""The shared resources, built once at start-up and passed in: no module globals."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp

from bot.detectors import Detector, build_detector
from bot.errors import ProviderAuthError, ProviderError, SettingsError
from bot.media import MediaWorkers, Transcoder
from bot.scanning import Clock, MediaTools, ScanService, utc_now
from bot.settings import Settings
from bot.storage import AuditLog, open_audit_log
from bot.verdict import ProviderName

log = logging.getLogger(__name__)

USER_AGENT = "Spoofwatch (+https://github.com/spoofwatch/spoofwatch)"


@dataclass(frozen=True, slots=True)
class Runtime:
    settings: Settings
    http_session: aiohttp.ClientSession
    audit: AuditLog
    detectors: dict[ProviderName, Detector]
    scans: ScanService


@asynccontextmanager
async def open_runtime(
    settings: Settings,
    *,
    providers: Sequence[ProviderName] | None = None,
    clock: Clock = utc_now,
) -> AsyncIterator[Runtime]:
    """Open the session, the database and the detectors; close them all on exit."""
    chosen = list(providers) if providers is not None else settings.configured_providers()
    # Uploads of large files hold a connection each for as long as the uplink needs, so the
    # per-host cap must not be below the most scans that may run at once (SPOOFWATCH_WORKERS
    # goes up to 64), or it silently queues them (bench/sdk_compare.py).
    connector = aiohttp.TCPConnector(limit=100, limit_per_host=64, ttl_dns_cache=300)
    async with aiohttp.ClientSession(
        connector=connector, headers={"User-Agent": USER_AGENT}
    ) as http_session:
        audit = await open_audit_log(settings.audit_log_location, clock=clock)
        media_workers = MediaWorkers(settings.decoder_processes)
        try:
            # Every scan's file is probed in them; a bot that cannot start them (PyAV
            # missing) stops here with a clear message rather than failing every scan.
            await media_workers.start()
            detectors = {p: build_detector(settings, http_session, p) for p in chosen}
            await check_credentials(detectors)
            scans = ScanService(
                audit=audit.scans,
                detectors=detectors,
                media=MediaTools(
                    http_session,
                    allowed_hosts=settings.allowed_media_hosts,
                    timeout_s=settings.ffmpeg_timeout_s,
                    transcoder=Transcoder(media_workers),
                ),
                temp_dir=settings.temp_dir,
                clock=clock,
            )
            await scans.sweep_workdirs()
            log.info(
                "runtime ready: providers %s, database %s",
                ", ".join(p.value for p in chosen) or "none",
                "PostgreSQL" if settings.database_url else settings.db_path,
            )
            yield Runtime(
                settings=settings,
                http_session=http_session,
                audit=audit,
                detectors=detectors,
                scans=scans,
            )
        finally:
            try:
                await media_workers.close()
            finally:
                await audit.close()


#: The settings an operator fixes when a provider refuses the credentials.
_CREDENTIAL_SETTINGS = {
    ProviderName.BEHAVIORAL_SIGNALS: "BEHAVIORALSIGNALS_API_KEY / BEHAVIORALSIGNALS_CID",
    ProviderName.RESEMBLE: "RESEMBLE_API_KEY",
}


async def check_credentials(detectors: Mapping[ProviderName, Detector]) -> None:
    """Ask each provider, once at start-up, whether it takes the credentials.

    Behavioral Signals answers `GET /auth`; Resemble, which has no such endpoint, its unbilled
    detect list. A refusal stops start-up with one line naming the settings (every scan would
    fail the same way, and a member would be the first to find out); a service that cannot
    be asked right now only warns, since it may be back before the first scan. The bot keeps
    checking while it runs (`bot.provider_health`).
    """
    for provider, detector in detectors.items():
        name = "Behavioral Signals" if provider is ProviderName.BEHAVIORAL_SIGNALS else "Resemble"
        try:
            await detector.check_credentials()
        except ProviderAuthError as exc:
            raise SettingsError(
                f"{name} refused {_CREDENTIAL_SETTINGS[provider]} at start-up ({exc})"
            ) from exc
        except ProviderError as exc:
            log.warning("could not check the %s credentials at start-up: %s", name, exc)
        else:
            what = (
                "API key and project id"
                if provider is ProviderName.BEHAVIORAL_SIGNALS
                else "API key"
            )
            log.info("%s accepted the %s", name, what)
