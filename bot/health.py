"""`/metrics` and `/healthz` on one port (`SPOOFWATCH_METRICS_PORT`), on the bot's event loop.

An aiohttp server rather than prometheus_client's thread server: no thread reads the bot's
state while the loop changes it, and the health check can await the database like any other
coroutine.

`/healthz` answers 200 with a JSON body when every part is healthy, else 503 with the same
body naming what failed:

- `gateway`: the Discord gateway connection is up (every shard's, on a sharded client);
- `database`: the audit log takes a write now (`AuditLog.ping`), within `DB_TIMEOUT_S`;
- `providers`: each provider answered the last request made to it (any HTTP status: a
  refusal is the service up; no answer at all is not). One never asked yet counts as up.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from bot.errors import SettingsError
from bot.metrics import Metrics
from bot.storage import AuditLog

log = logging.getLogger(__name__)

#: How long the database may take to answer the health check's write.
DB_TIMEOUT_S = 5.0


class HealthServer:
    """Serves one process's metrics and health."""

    def __init__(
        self,
        metrics: Metrics,
        audit: AuditLog,
        *,
        db_timeout_s: float = DB_TIMEOUT_S,
    ) -> None:
        self.metrics = metrics
        self._audit = audit
        self._db_timeout_s = db_timeout_s
        self._runner: web.AppRunner | None = None
        #: Where it listens once started (host, port): port 0 picks a free one (tests).
        self.address: tuple[str, int] | None = None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/metrics", self._serve_metrics)
        app.router.add_get("/healthz", self._serve_health)
        return app

    async def start(self, host: str, port: int) -> None:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        addresses = self._runner.addresses
        bound = int(addresses[0][1]) if addresses else port
        self.address = (host, bound)
        log.info("metrics and health check on http://%s:%d/ (/metrics, /healthz)", host, bound)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def check(self) -> tuple[bool, dict[str, Any]]:
        """Every part's state, and whether all are healthy."""
        gateway = self.metrics.gateway()
        database = await self._check_database()
        providers = {
            name: {"ok": check.reachable, "at": check.at.isoformat(), "detail": check.detail}
            for name, check in sorted(self.metrics.provider_checks.items())
        }
        parts: dict[str, Any] = {
            "gateway": {"ok": gateway},
            "database": database,
            "providers": providers,
        }
        failing = [name for name in ("gateway", "database") if not parts[name]["ok"]]
        failing += [f"provider:{name}" for name, state in providers.items() if not state["ok"]]
        body = {"status": "failing" if failing else "ok", "failing": failing, **parts}
        return not failing, body

    async def _check_database(self) -> dict[str, Any]:
        try:
            async with asyncio.timeout(self._db_timeout_s):
                await self._audit.ping()
        except TimeoutError:
            return {"ok": False, "detail": f"no answer in {self._db_timeout_s:g} s"}
        except Exception as exc:
            # The class only: a driver's message may quote the connection URL.
            log.warning("health check: the audit log refused a write (%s)", type(exc).__name__)
            return {"ok": False, "detail": type(exc).__name__}
        return {"ok": True}

    async def _serve_health(self, _request: web.Request) -> web.Response:
        healthy, body = await self.check()
        return web.json_response(body, status=200 if healthy else 503)

    async def _serve_metrics(self, _request: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(self.metrics.registry),
            headers={"Content-Type": CONTENT_TYPE_LATEST},
        )


@asynccontextmanager
async def serve_health(
    metrics: Metrics | None,
    audit: AuditLog,
    *,
    host: str,
    port: int | None,
) -> AsyncIterator[HealthServer | None]:
    """Serve `/metrics` and `/healthz` while inside (nothing when metrics are off)."""
    if metrics is None or port is None:
        yield None
        return
    server = HealthServer(metrics, audit)
    try:
        await server.start(host, port)
    except OSError as exc:
        await server.stop()
        raise SettingsError(
            f"SPOOFWATCH_METRICS_PORT: cannot listen on {host}:{port} ({exc.strerror or exc})"
        ) from exc
    try:
        yield server
    finally:
        await server.stop()
