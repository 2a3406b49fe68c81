"""Fixtures the test modules share, each defined once: the manual clock, the credentials the
daemon configs name, the sandbox as a loopback server (in-process or its own process),
the HTTP API's store, control and client, and the notification receiver. Model factories are
in factories.py."""

from __future__ import annotations

import io
import logging
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pg
import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestServer
from apikit import COMPONENTS, TOKEN, Client, ClientFactory, StoreControl
from chaoskit import new_database
from daemonkit import CREDENTIALS, free_port, log_into, port_connects, sqlite_url, wait_for
from factories import T0
from notifykit import Receiver, start_receiver, stop_receiver
from pytest_aiohttp import AiohttpServer
from structlog.typing import FilteringBoundLogger

from detector import sandbox as sandbox_platform
from detector.clock import ManualClock
from detector.metrics import Metrics
from detector.store import migrate
from detector.store.sql import SqlStore
from detector.web.app import make_app
from probes import trace_config


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment variables daemonkit's configs name (`*_env`)."""
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
async def sandbox(clock: ManualClock) -> AsyncIterator[TestServer]:
    """The sandbox platform on loopback, on the test's clock (fault durations follow it)."""
    app = sandbox_platform.make_app(seed=7, clock=clock, latency=(0.001, 0.002))
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield server
    await server.close()


@pytest.fixture
def sandbox_url() -> Iterator[str]:
    """`detector sandbox` as its own process on a free port, on the wall clock."""
    port = free_port()
    command = [sys.executable, "-m", "detector.cli", "sandbox", "--port", str(port)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: port_connects(port) or None, 20, "the sandbox to listen")
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
async def probe_sandbox(aiohttp_server: AiohttpServer) -> TestServer:
    """The sandbox for probe tests: wall clock, a slow mode of 0.3 s, imports in 50-100 ms."""
    app = sandbox_platform.make_app(
        seed=3, latency=(0.001, 0.003), slow_seconds=0.3, import_delay=(0.05, 0.1)
    )
    return await aiohttp_server(app)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """A client session with the daemon's trace config (probe phases)."""
    async with aiohttp.ClientSession(trace_configs=[trace_config()]) as client_session:
        yield client_session


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """notifykit's loopback receiver: records what the notification channels send."""
    r = await start_receiver()
    yield r
    await stop_receiver(r)


@pytest.fixture
def log_output() -> io.StringIO:
    return io.StringIO()


@pytest.fixture
def log(log_output: io.StringIO) -> FilteringBoundLogger:
    """Debug and up, key=value, into log_output."""
    processors = (structlog.processors.format_exc_info, structlog.processors.KeyValueRenderer())
    return log_into(log_output, *processors, level=logging.DEBUG)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A real PostgreSQL for the run; its `detector` database is migrated and used as the
    template of each test's own database. Fails (never skips) when it cannot start."""
    with pg.start_postgres() as url:
        migrate.upgrade(url)
        yield url


@pytest.fixture
def pg_url(postgres_server: str) -> str:
    """A fresh database of its own at the newest schema, on the run's PostgreSQL."""
    return new_database(postgres_server)


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh store on each backend in turn (the test runs once per backend): a SQLite file
    whose folder does not exist yet, or a new database at the newest schema on the run's
    PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/var/detector.db"  # parent dir made on first connect
    return new_database(request.getfixturevalue("postgres_server"))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlStore]:
    """A migrated SQLite file holding apikit.COMPONENTS."""
    sql = SqlStore(sqlite_url(tmp_path))
    sql.create_schema()
    sql.sync_components(COMPONENTS)
    yield sql
    sql.close()


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(version="test")


@pytest.fixture
def control(store: SqlStore, clock: ManualClock) -> StoreControl:
    return StoreControl(store, clock)


@pytest.fixture
def make_client(
    aiohttp_client: Callable[[web.Application], Awaitable[Client]],
    store: SqlStore,
    control: StoreControl,
    metrics: Metrics,
    clock: ManualClock,
) -> ClientFactory:
    """The API app over the fixtures above; keyword arguments replace any of make_app's."""

    async def make(**overrides: Any) -> Client:
        options: dict[str, Any] = {
            "store": store, "control": control, "metrics": metrics, "clock": clock,
            "token": TOKEN, "page_name": "Sendcloud status",
        }  # fmt: skip
        options.update(overrides)
        return await aiohttp_client(make_app(**options))

    return make


@pytest.fixture
async def client(make_client: ClientFactory) -> AsyncIterator[Client]:
    yield await make_client()
