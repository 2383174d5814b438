"""Metrics and health (`SPOOFWATCH_METRICS_PORT`): what /metrics counts during real scans,
what /healthz says, the Docker HEALTHCHECK's probe, and the database ping on both backends."""

from __future__ import annotations

import asyncio
import os
import re
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from bot import metrics
from bot.health import HealthServer, serve_health
from bot.metrics import Metrics, route_template
from bot.storage import AuditLog
from bot.storage.sqlite import SQLiteAuditLog
from testkit.alerts import make_modlog
from testkit.audit_log import clock, log  # noqa: F401  (audit-log fixtures)
from testkit.e2e import MakeSpoofwatch
from testkit.media_factory import MediaFiles
from testkit.moderation import FAKE, listeners_done, wav

ROOT = Path(__file__).resolve().parents[2]


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a /metrics page: (name, labels) → value."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(
    page: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return page.get((name, frozenset(labels.items())), 0.0)


@pytest.mark.parametrize(
    ("path", "template"),
    [
        ("/channels/1234/messages", "/channels/{id}/messages"),
        (
            "/channels/1/messages/2/reactions/%F0%9F%94%8D/@me",
            "/channels/{id}/messages/{id}/reactions/{emoji}/@me",
        ),
        (
            "/interactions/99/aW50ZXJhY3Rpb246OTk6dG9rZW4/callback",
            "/interactions/{id}/{token}/callback",
        ),
        ("/webhooks/5/Tok.en_-x/messages/@original", "/webhooks/{id}/{token}/messages/@original"),
        ("/applications/5/guilds/6/commands", "/applications/{id}/guilds/{id}/commands"),
        ("/users/@me", "/users/@me"),
        ("/oauth2/applications/@me", "/oauth2/applications/@me"),
        ("/invites/ab12cd", "/invites/{param}"),
        ("/guilds/7/members/Search%20Me", "/guilds/{id}/members/{param}"),
    ],
)
def test_discord_routes_are_labelled_by_template(path: str, template: str) -> None:
    """Fails if an id, token or emoji reaches a label: every message would add a series."""
    assert route_template(path) == template


def test_hooks_do_nothing_without_active_metrics() -> None:
    """Fails if a hook needs metrics to be on (the CLI and most of the bot's runs)."""
    metrics.provider_attempt("resemble", "upload", 200, time.perf_counter())
    metrics.decoder_restarted("died")
    assert metrics.active() is None


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def fetch(http: aiohttp.ClientSession, server: HealthServer, path: str) -> tuple[int, Any]:
    assert server.address is not None
    host, port = server.address
    async with http.get(f"http://{host}:{port}{path}") as response:
        if path == "/healthz":
            return response.status, await response.json()
        return response.status, await response.text()


async def test_metrics_count_a_real_scan_and_health_is_ok(
    make_spoofwatch: MakeSpoofwatch, media: MediaFiles, http: aiohttp.ClientSession
) -> None:
    """One voice message through the whole bot: fails if the scan, its time to verdict, the
    provider requests, the Discord reply (by route template), the audit-log writes or the
    scan queue are missing from /metrics, or if /healthz is not 200 with every part ok."""
    with metrics.activate(Metrics()) as active:
        assert active is not None
        async with make_spoofwatch() as sw:
            message = await sw.post(media.voice_ogg, voice=True)
            await sw.reply_to(message)
            async with serve_health(active, sw.runtime.audit, host="127.0.0.1", port=0) as server:
                assert server is not None
                status, text = await fetch(http, server, "/metrics")
                health_status, health = await fetch(http, server, "/healthz")
    assert status == 200
    page = samples(text)
    assert (
        value(page, "spoofwatch_scans_total", trigger="auto", provider="resemble", outcome="done")
        == 1
    )
    assert value(page, "spoofwatch_time_to_verdict_seconds_count", provider="resemble") == 1
    assert (
        value(
            page,
            "spoofwatch_provider_requests_total",
            provider="resemble",
            request="upload",
            result="2xx",
        )
        == 1
    )
    assert (
        value(
            page,
            "spoofwatch_provider_request_duration_seconds_count",
            provider="resemble",
            request="upload",
        )
        == 1
    )
    assert value(page, "spoofwatch_provider_up", provider="resemble") == 1
    assert (
        value(
            page,
            "spoofwatch_discord_requests_total",
            method="POST",
            route="/channels/{id}/messages",
            status="200",
        )
        == 1
    )
    assert (
        value(page, "spoofwatch_audit_write_duration_seconds_count", operation="create_scan") == 1
    )
    assert value(page, "spoofwatch_audit_write_duration_seconds_count", operation="mark_done") == 1
    assert value(page, "spoofwatch_scan_queue_depth") == 0
    assert not any(re.search(r"\d{15,}", str(labels)) for _, labels in page)  # no snowflake
    assert health_status == 200
    assert health["status"] == "ok"
    assert health["gateway"] == {"ok": True}
    assert health["database"] == {"ok": True}
    assert health["providers"]["resemble"]["ok"] is True


async def test_reused_verdict_and_failure_are_counted(
    make_spoofwatch: MakeSpoofwatch, media: MediaFiles
) -> None:
    """Fails if a reused verdict is not counted as such (it costs no provider request) or a
    refused file is not counted by its error kind."""
    with metrics.activate(Metrics()) as active:
        assert active is not None
        async with make_spoofwatch() as sw:
            for _ in range(2):
                await sw.reply_to(await sw.post(media.voice_ogg, voice=True))
            await sw.reply_to(await sw.post(media.random_ogg))
        page = samples(generate_latest(active.registry).decode())
    assert (
        value(page, "spoofwatch_scans_total", trigger="auto", provider="resemble", outcome="reused")
        == 1
    )
    assert value(page, "spoofwatch_reused_verdicts_total", provider="resemble") == 1
    assert (
        value(
            page,
            "spoofwatch_provider_requests_total",
            provider="resemble",
            request="upload",
            result="2xx",
        )
        == 1
    )
    failures = {
        dict(labels)["kind"]: count
        for (name, labels), count in page.items()
        if name == "spoofwatch_scan_failures_total"
    }
    assert sum(failures.values()) == 1, failures


async def test_healthz_is_503_naming_what_fails(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """No gateway, a closed database and a provider that did not answer: fails unless
    /healthz answers 503 and names all three."""
    active = Metrics()
    active.provider_attempt("behavioral_signals", "job status", None, time.perf_counter())
    audit = await SQLiteAuditLog.open(tmp_path / "audit.db")
    await audit.close()  # a write now raises, as a dead writer would
    async with serve_health(active, audit, host="127.0.0.1", port=0) as server:
        assert server is not None
        status, body = await fetch(http, server, "/healthz")
    assert status == 503
    assert body["status"] == "failing"
    assert set(body["failing"]) == {"gateway", "database", "provider:behavioral_signals"}


async def test_docker_healthcheck_probe_follows_healthz(tmp_path: Path) -> None:
    """The image's HEALTHCHECK (`python -m bot.healthcheck`): fails unless it exits 0 while
    /healthz is 200 and 1 when it is 503."""
    active = Metrics()
    audit = await SQLiteAuditLog.open(tmp_path / "audit.db")
    try:
        async with serve_health(active, audit, host="127.0.0.1", port=0) as server:
            assert server is not None and server.address is not None

            async def probe() -> int:
                env = {
                    "PATH": os.environ["PATH"],
                    "SPOOFWATCH_METRICS_PORT": str(server.address[1]),
                    "SPOOFWATCH_METRICS_HOST": "0.0.0.0",
                }
                proc = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "bot.healthcheck",
                    cwd=ROOT,
                    env=env,
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.DEVNULL,
                )
                return await proc.wait()

            assert await probe() == 1  # no gateway yet
            active.gateway = lambda: True
            assert await probe() == 0
    finally:
        await audit.close()


async def test_database_ping_writes_on_every_backend(log: AuditLog) -> None:  # noqa: F811
    """Fails if the health check's write fails on a healthy SQLite or PostgreSQL log."""
    await log.ping()
    await log.ping()


async def test_metrics_port_in_use_is_a_settings_error(tmp_path: Path) -> None:
    """Fails if a taken port stops the bot with a traceback instead of naming the setting."""
    from bot.errors import SettingsError

    audit = await SQLiteAuditLog.open(tmp_path / "audit.db")
    try:
        async with serve_health(Metrics(), audit, host="127.0.0.1", port=0) as first:
            assert first is not None and first.address is not None
            with pytest.raises(SettingsError, match="SPOOFWATCH_METRICS_PORT"):
                async with serve_health(Metrics(), audit, host="127.0.0.1", port=first.address[1]):
                    pass
    finally:
        await audit.close()


def test_grafana_dashboard_queries_only_metrics_that_exist() -> None:
    """Fails if deploy/grafana-spoofwatch.json plots a metric the bot does not export (a
    renamed metric leaves an empty panel that looks like "nothing happened")."""
    import json
    import re

    dashboard = json.loads((ROOT / "deploy" / "grafana-spoofwatch.json").read_text())
    queried = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"spoofwatch_[a-z_]+", target["expr"])
    }
    exported = {
        sample.name for family in Metrics().registry.collect() for sample in family.samples
    } | {
        f"{family.name}{suffix}"
        for family in Metrics().registry.collect()
        for suffix in ("_total", "_bucket", "_count", "_sum", "")
    }
    assert queried and queried <= exported, queried - exported


async def test_a_provider_that_does_not_answer_is_down(
    make_resemble_client: Any,
) -> None:
    """A connection refused at every attempt: fails unless each attempt is counted as
    `no_answer` and /healthz names the provider, and a later answer brings it back up."""
    import socket

    from bot.errors import ProviderError

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    with metrics.activate(Metrics()) as active:
        assert active is not None
        down = make_resemble_client(base_url=f"http://127.0.0.1:{port}/api/v2")
        with pytest.raises(ProviderError):
            await down.wait("0c6a1f0e-job")
        assert active.provider_checks["resemble"].reachable is False
        attempts = active.registry.get_sample_value(
            "spoofwatch_provider_requests_total",
            {"provider": "resemble", "request": "job status", "result": "no_answer"},
        )
        assert attempts is not None and attempts >= 2  # retried: every attempt counts
        with pytest.raises(ProviderError):  # the stand-in answers 404 for an unknown job
            await make_resemble_client().wait("0c6a1f0e-job")
        assert active.provider_checks["resemble"].reachable is True


async def test_mod_log_alerts_are_counted_by_outcome(
    make_spoofwatch: MakeSpoofwatch, tmp_path: Path
) -> None:
    """Fails if a posted alert, or one that could not be posted, is missing from
    spoofwatch_alerts_total (an operator's only view of alerts that never reached a mod-log)."""
    with metrics.activate(Metrics()) as active:
        assert active is not None
        async with make_spoofwatch() as sw:
            modlog = await make_modlog(sw)
            for n in (1, 2):
                if n == 2:  # Discord refuses both the alert and its plain retry
                    sw.emu.fail_next("POST", f"/channels/{modlog.id}/messages", 403, times=2)
                path = wav(tmp_path, n)
                sw.resemble.script_result(path, metrics=FAKE)
                await sw.reply_to(await sw.post(path))
                await listeners_done(sw)
        page = samples(generate_latest(active.registry).decode())
    assert value(page, "spoofwatch_alerts_total", outcome="posted") == 1
    assert value(page, "spoofwatch_alerts_total", outcome="not_posted") == 1
