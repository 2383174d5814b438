"""A real PostgreSQL for the storage tests, never a mock.

Found in this order: `SPOOFWATCH_TEST_DATABASE_URL`; a server on 127.0.0.1:5432 that lets
`postgres` into database `test` (CI, and `scripts/bootstrap --dev` machines); else a
throwaway cluster started from the local binaries (initdb/pg_ctl) in a temporary directory.
Each test gets a schema of its own (`search_path` in its URL), so parallel runs and tests
never see each other's rows. With `CI=true` and no server to be had, the tests fail loudly
instead of skipping.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import asyncpg
import pytest

LOCAL_URL = "postgresql://postgres@127.0.0.1:5432/test"


async def _reachable(url: str) -> bool:
    try:
        conn = await asyncpg.connect(url, timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    await conn.close()
    return True


def _reachable_now(url: str) -> bool:
    """`_reachable`, from sync code that may itself run inside an event loop (the session
    fixture is first requested by an async fixture): on a thread with a loop of its own."""
    with ThreadPoolExecutor(max_workers=1) as thread:
        return thread.submit(asyncio.run, _reachable(url)).result()


async def _create_database(port: str) -> None:
    conn = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres")
    try:
        await conn.execute("CREATE DATABASE test")
    finally:
        await conn.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _local_binaries() -> Path | None:
    for name in ("initdb", "pg_ctl"):
        if shutil.which(name) is None:
            break
    else:
        return Path(shutil.which("initdb") or "").parent
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


class _Throwaway:
    """A PostgreSQL cluster in a temporary directory, trust auth on a free loopback port."""

    def __init__(self, binaries: Path) -> None:
        self._bin = binaries
        self._dir = Path(tempfile.mkdtemp(prefix="spoofwatch-pg-"))
        self.port = _free_port()
        # initdb refuses to run as root (containers, CI images): run it as `postgres`, whom
        # the PostgreSQL packages create, and who must own the cluster's directory.
        self._as: list[str] = []
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(self._dir, owner.pw_uid, owner.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]

    def start(self) -> str:
        data, port = self._dir / "data", str(self.port)
        self._run("initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8")
        options = f"-h 127.0.0.1 -p {port} -k {self._dir} -F"
        self._run("pg_ctl", "-D", data, "-l", self._dir / "log", "-w", "-o", options, "start")
        with ThreadPoolExecutor(max_workers=1) as thread:
            thread.submit(asyncio.run, _create_database(port)).result()
        return f"postgresql://postgres@127.0.0.1:{port}/test"

    def _run(self, tool: str, *args: object) -> None:
        command = [*self._as, str(self._bin / tool), *map(str, args)]
        subprocess.run(command, check=True, capture_output=True)

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._run("pg_ctl", "-D", self._dir / "data", "-m", "immediate", "stop")
        shutil.rmtree(self._dir, ignore_errors=True)


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"PostgreSQL tests cannot run in CI: {reason}", pytrace=False)
    pytest.skip(f"no PostgreSQL: {reason} (scripts/bootstrap --dev installs it)")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """The URL of a PostgreSQL server the tests may create schemas in."""
    explicit = os.environ.get("SPOOFWATCH_TEST_DATABASE_URL")
    if explicit:
        if not _reachable_now(explicit):
            pytest.fail("SPOOFWATCH_TEST_DATABASE_URL is set but unreachable", pytrace=False)
        yield explicit
        return
    if _reachable_now(LOCAL_URL):
        yield LOCAL_URL
        return
    binaries = _local_binaries()
    if binaries is not None and os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            binaries = None  # as root, initdb needs the `postgres` user to run as
    if binaries is None:
        _unavailable("no server on 127.0.0.1:5432 and no initdb/pg_ctl found")
    assert binaries is not None
    server = _Throwaway(binaries)
    try:
        url = server.start()
    except subprocess.CalledProcessError as exc:
        server.stop()
        _unavailable(f"could not start a throwaway server: {exc.stderr!r}")
        raise
    try:
        yield url
    finally:
        server.stop()


async def fresh_schema(server: str) -> str:
    """A URL on `server` whose connections live in a new, empty schema of their own."""
    schema = f"t_{uuid.uuid4().hex[:16]}"
    conn = await asyncpg.connect(server)
    try:
        await conn.execute(f"CREATE SCHEMA {schema}")
    finally:
        await conn.close()
    separator = "&" if "?" in server else "?"
    return f"{server}{separator}search_path={schema}"


async def drop_schema(url: str) -> None:
    """Drop the schema `fresh_schema` made for `url`."""
    server, _, schema = url.rpartition("search_path=")
    conn = await asyncpg.connect(server.rstrip("?&"))
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    finally:
        await conn.close()


@pytest.fixture
async def postgres_url(postgres_server: str) -> AsyncIterator[str]:
    """A URL whose connections live in a fresh schema of their own, dropped afterwards."""
    url = await fresh_schema(postgres_server)
    yield url
    await drop_schema(url)
