"""Every probe kind against the real sandbox on loopback: green, red, hung, crashing."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestServer
from daemonkit import log_into
from pydantic import ValidationError
from pytest_aiohttp import AiohttpServer
from structlog.typing import FilteringBoundLogger

from detector.clock import ManualClock, SystemClock
from detector.model import PROBE_KINDS, ProbeResult
from detector.sandbox import SANDBOX, make_app
from probes import OPTIONS, PROBES, Credentials, ProbeSpec, run_probe, trace_config
from probes.http import HttpOptions

USERNAME, PASSWORD = "probe-user-5f2c", "s3cr3t-pass-9a7e"
CREDENTIALS = Credentials.model_validate({"username": USERNAME, "password": PASSWORD})


@pytest.fixture
async def sandbox(aiohttp_server: AiohttpServer) -> TestServer:
    app = make_app(seed=3, latency=(0.001, 0.003), slow_seconds=0.3, import_delay=(0.05, 0.1))
    return await aiohttp_server(app)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(trace_configs=[trace_config()]) as client_session:
        yield client_session


@pytest.fixture
def log_output() -> Iterator[io.StringIO]:
    yield io.StringIO()


@pytest.fixture
def log(log_output: io.StringIO) -> FilteringBoundLogger:
    processors = (structlog.processors.format_exc_info, structlog.processors.KeyValueRenderer())
    return log_into(log_output, *processors, level=logging.DEBUG)


def make_spec(server: TestServer | str, kind: str, component: str, **fields: Any) -> ProbeSpec:
    target = server if isinstance(server, str) else str(server.make_url(""))
    values = {"id": f"{kind}-test", "kind": kind, "component": component, "target": target}
    return ProbeSpec.model_validate({"credentials": CREDENTIALS, **values, **fields})


async def probe(
    spec: ProbeSpec,
    session: aiohttp.ClientSession,
    log: FilteringBoundLogger,
    clock: Any = None,
) -> ProbeResult:
    return await run_probe(spec, session=session, log=log, clock=clock or SystemClock())


async def add_fault(server: TestServer, **fault: Any) -> None:
    url = server.make_url("/_sandbox/faults")
    async with aiohttp.ClientSession() as client, client.post(url, json=fault) as resp:
        assert resp.status == 201, await resp.text()


GREEN = [
    ("label_creation", "carriers/dhl", {"labels": {"market": "DE"}}),
    ("label_creation", "carriers/new_carrier", {}),
    (
        "order_import",
        "integrations/shopify",
        {"settings": {"poll_interval": "50ms", "max_lag": "2s"}},
    ),
    ("http", "sendcloud/api", {"settings": {"expect_json": {"user.username": USERNAME}}}),
    ("http", "sendcloud/panel", {"settings": {"path": "/panel/", "expect_body": "Sendcloud"}}),
    ("tracking", "carriers/dhl", {"labels": {"market": "DE"}}),
    ("tracking", "sendcloud/tracking", {"settings": {"carrier": "postnl"}}),
]


@pytest.mark.parametrize(("kind", "component", "fields"), GREEN)
async def test_probe_is_green_against_a_healthy_sandbox(
    sandbox: TestServer,
    session: aiohttp.ClientSession,
    log: FilteringBoundLogger,
    kind: str,
    component: str,
    fields: dict[str, Any],
) -> None:
    spec = make_spec(sandbox, kind, component, **fields)
    result = await probe(spec, session, log)
    assert (result.ok, result.error) == (True, None)
    assert (result.probe, result.kind, result.component) == (spec.id, kind, component)
    assert result.labels == spec.labels
    assert result.latency_s is not None
    assert 0 < result.latency_s < 2
    assert set(result.phases) == {"dns", "connect", "request", "first_byte"}
    assert result.phases["first_byte"] > 0


async def test_label_probe_leaves_no_parcel_behind(
    sandbox: TestServer, session: aiohttp.ClientSession, log: FilteringBoundLogger
) -> None:
    spec = make_spec(sandbox, "label_creation", "carriers/dhl", labels={"market": "FR"})
    for _ in range(3):
        assert (await probe(spec, session, log)).ok
    parcels = sandbox.app[SANDBOX].parcels.values()
    assert len(parcels) == 3
    assert all(p.cancelled_at is not None and p.country == "FR" for p in parcels)


async def test_result_time_comes_from_the_clock(
    sandbox: TestServer, session: aiohttp.ClientSession, log: FilteringBoundLogger
) -> None:
    clock = ManualClock(1_000.0)
    result = await probe(make_spec(sandbox, "http", "sendcloud/api"), session, log, clock)
    assert result.at == 1_000.0


RED = [
    (
        "label_creation",
        "carriers/dhl",
        {},
        {"component": "carriers/dhl"},
        "HTTP 503 on POST /api/v2/parcels: carriers/dhl is unavailable (sandbox fault)",
    ),
    (
        "label_creation",
        "carriers/dhl",
        {"labels": {"market": "DE"}},
        {"component": "carriers/dhl", "market": "DE"},
        "HTTP 503 on POST /api/v2/parcels: carriers/dhl is unavailable (sandbox fault)",
    ),
    (
        "order_import",
        "integrations/shopify",
        {},
        {"component": "integrations/shopify"},
        "integration shopify failing since ",
    ),
    (
        "order_import",
        "integrations/shopify",
        {"settings": {"integration_id": 1, "check_freshness": False}},
        {"component": "integrations/shopify"},
        "HTTP 503 on POST /api/v3/orders: integrations/shopify is unavailable (sandbox fault)",
    ),
    (
        "http",
        "sendcloud/api",
        {},
        {"component": "sendcloud/api"},
        "HTTP 503 on GET /api/v2/user: sendcloud/api is unavailable (sandbox fault)",
    ),
    (
        "tracking",
        "carriers/dhl",
        {},
        {"component": "carriers/dhl"},
        "'Announcement failed' in 3 of 10 updates",
    ),
    (
        "tracking",
        "sendcloud/tracking",
        {"settings": {"carrier": "dhl"}},
        {"component": "sendcloud/tracking"},
        "HTTP 503 on GET /tracking/dhl: sendcloud/tracking is unavailable (sandbox fault)",
    ),
]


@pytest.mark.parametrize(("kind", "component", "fields", "fault", "error"), RED)
async def test_probe_is_red_under_an_error_fault(
    sandbox: TestServer,
    session: aiohttp.ClientSession,
    log: FilteringBoundLogger,
    kind: str,
    component: str,
    fields: dict[str, Any],
    fault: dict[str, Any],
    error: str,
) -> None:
    await add_fault(sandbox, mode="error", seconds=600, **fault)
    result = await probe(make_spec(sandbox, kind, component, **fields), session, log)
    assert (result.ok, result.result) == (False, "fail")  # the target answered, wrongly
    assert result.error is not None
    assert result.error.startswith(error)


async def test_market_fault_leaves_other_markets_green(
    sandbox: TestServer, session: aiohttp.ClientSession, log: FilteringBoundLogger
) -> None:
    await add_fault(sandbox, component="carriers/dhl", mode="error", seconds=600, market="DE")
    spec = make_spec(sandbox, "label_creation", "carriers/dhl", labels={"market": "NL"})
    assert (await probe(spec, session, log)).ok


async def test_timeout_fault_ends_at_the_hard_timeout(
    sandbox: TestServer, session: aiohttp.ClientSession, log: FilteringBoundLogger
) -> None:
    await add_fault(sandbox, component="carriers/dhl", mode="timeout", seconds=600)
    spec = make_spec(sandbox, "label_creation", "carriers/dhl", timeout=0.3)
    result = await probe(spec, session, log)
    assert (result.ok, result.error, result.result) == (False, "timeout after 0.3s", "error")
    assert result.latency_s is not None
    assert 0.3 <= result.latency_s < 0.5


async def test_http_latency_bound(
    sandbox: TestServer, session: aiohttp.ClientSession, log: FilteringBoundLogger
) -> None:
    await add_fault(sandbox, component="sendcloud/panel", mode="slow", seconds=600)
    settings = {"path": "/panel/", "max_latency": "100ms"}
    result = await probe(
        make_spec(sandbox, "http", "sendcloud/panel", settings=settings), session, log
    )
    assert result.error is not None
    assert result.error.startswith("latency 0.3")
    assert result.error.endswith("s > 0.1s")


@pytest.mark.parametrize(
    ("settings", "error"),
    [
        (
            {"expect_json": {"user.username": "x"}},
            f"json user.username = '{USERNAME}', expected 'x'",
        ),
        ({"expect_json": {"user.plan": "pro"}}, "json user.plan missing, expected 'pro'"),
        ({"expect_body": "welcome"}, "body does not contain 'welcome'"),
        ({"expected_status": [204]}, "HTTP 200 on GET /api/v2/user"),
        ({"path": "/api/v2/nothing"}, "HTTP 404 on GET /api/v2/nothing"),
        ({"send_credentials": False}, "HTTP 401 on GET /api/v2/user: Invalid username/password."),
    ],
)
async def test_http_checks_say_what_they_saw(
    sandbox: TestServer,
    session: aiohttp.ClientSession,
    log: FilteringBoundLogger,
    settings: dict[str, Any],
    error: str,
) -> None:
    result = await probe(
        make_spec(sandbox, "http", "sendcloud/api", settings=settings), session, log
    )
    assert (result.ok, result.error) == (False, error)


async def test_label_check_failure_still_cancels_the_parcel(
    sandbox: TestServer, session: aiohttp.ClientSession, log: FilteringBoundLogger
) -> None:
    settings = {"label_path": "/api/v2/missing/{parcel_id}"}
    spec = make_spec(sandbox, "label_creation", "carriers/dhl", settings=settings)
    result = await probe(spec, session, log)
    assert result.error == "HTTP 404 on GET /api/v2/missing/1"
    [parcel] = sandbox.app[SANDBOX].parcels.values()
    assert parcel.cancelled_at is not None


async def test_hard_timeout_after_create_still_cancels_the_parcel(
    sandbox: TestServer, session: aiohttp.ClientSession, log: FilteringBoundLogger
) -> None:
    async with hung_server() as hung_url:
        settings = {"label_path": hung_url + "/labels/{parcel_id}"}
        spec = make_spec(sandbox, "label_creation", "carriers/dhl", timeout=0.3, settings=settings)
        result = await probe(spec, session, log)
        assert (result.ok, result.error, result.result) == (False, "timeout after 0.3s", "error")
        [parcel] = sandbox.app[SANDBOX].parcels.values()
        async with asyncio.timeout(2):  # the cancel runs on in the background
            while parcel.cancelled_at is None:
                await asyncio.sleep(0.01)


async def test_order_import_lag(
    aiohttp_server: AiohttpServer, session: aiohttp.ClientSession, log: FilteringBoundLogger
) -> None:
    server = await aiohttp_server(make_app(latency=(0.0, 0.001), import_delay=(60.0, 60.0)))
    settings = {"max_lag": "0.2s", "poll_interval": "50ms"}
    spec = make_spec(server, "order_import", "integrations/magento", settings=settings)
    result = await probe(spec, session, log)
    assert (result.ok, result.error) == (False, "order not imported after 0.2s")
    assert server.app[SANDBOX].orders == {}  # the test order was deleted all the same


async def test_tracking_lag(
    aiohttp_server: AiohttpServer, session: aiohttp.ClientSession, log: FilteringBoundLogger
) -> None:
    clock = ManualClock()
    server = await aiohttp_server(make_app(clock=clock, latency=(0.0, 0.001)))
    await add_fault(server, component="carriers/gls", mode="timeout", seconds=3600)
    clock.advance(1200)
    spec = make_spec(server, "tracking", "carriers/gls")
    result = await probe(spec, session, log, clock)
    assert result.error is not None
    assert result.error.startswith("tracking lag 20m > 10m (last update 2026-11-28T10:00:00Z)")


async def test_unknown_integration(
    sandbox: TestServer, session: aiohttp.ClientSession, log: FilteringBoundLogger
) -> None:
    result = await probe(make_spec(sandbox, "order_import", "integrations/zz"), session, log)
    assert result.error == "integration 'zz' not in GET /api/v3/integrations"


async def test_tracking_needs_a_carrier_for_platform_components(
    sandbox: TestServer, session: aiohttp.ClientSession, log: FilteringBoundLogger
) -> None:
    result = await probe(make_spec(sandbox, "tracking", "sendcloud/tracking"), session, log)
    assert result.error == "settings.carrier is required for component sendcloud/tracking"


# ------------------------------------------------------------------ the runner's promises


async def test_refused_connection_is_a_result(
    session: aiohttp.ClientSession, log: FilteringBoundLogger
) -> None:
    port = unused_port()
    result = await probe(
        make_spec(f"http://127.0.0.1:{port}", "http", "sendcloud/api"), session, log
    )
    assert (result.ok, result.result) == (False, "error")
    assert result.error is not None
    assert result.error.startswith("ClientConnectorError: Cannot connect to host 127.0.0.1")


async def test_raising_probe_is_a_result(
    session: aiohttp.ClientSession,
    log: FilteringBoundLogger,
    log_output: io.StringIO,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def broken(spec: ProbeSpec, **_: Any) -> ProbeResult:
        raise RuntimeError("boom")

    monkeypatch.setitem(PROBES, "http", broken)
    result = await probe(make_spec("http://127.0.0.1:1", "http", "sendcloud/api"), session, log)
    assert (result.ok, result.error, result.result) == (False, "RuntimeError: boom", "error")
    assert "event='probe_crashed'" in log_output.getvalue()


async def test_a_503_whose_body_says_timeout_is_a_fail_not_an_error(
    aiohttp_server: AiohttpServer, session: aiohttp.ClientSession, log: FilteringBoundLogger
) -> None:
    async def unavailable(request: web.Request) -> web.Response:
        return web.json_response({"error": {"message": "upstream timeout"}}, status=503)

    app = web.Application()
    app.router.add_get("/api/v2/user", unavailable)
    server = await aiohttp_server(app)
    result = await run_probe(
        make_spec(server, "http", "sendcloud/api"),
        session=session,
        log=log,
        clock=SystemClock(),
        instance="ams-1",
    )
    assert result.error == "HTTP 503 on GET /api/v2/user: upstream timeout"
    assert (result.result, result.instance, result.suspect) == ("fail", "ams-1", False)


@pytest.mark.parametrize(
    ("check", "status", "host", "ok"),
    [
        ("http", 204, "127.0.0.1", True),
        ("http", 404, "127.0.0.1", True),  # an answer: the network works
        ("http", 502, "127.0.0.1", False),
        ("dns", 200, "localhost", True),
        ("dns", 200, "no-such-host.invalid", False),
    ],
)
async def test_canary_checks(
    aiohttp_server: AiohttpServer,
    session: aiohttp.ClientSession,
    log: FilteringBoundLogger,
    check: str,
    status: int,
    host: str,
    ok: bool,
) -> None:
    async def answer(request: web.Request) -> web.Response:
        return web.Response(status=status)

    app = web.Application()
    app.router.add_get("/", answer)
    server = await aiohttp_server(app)
    spec = ProbeSpec.model_validate(
        {
            "id": "canary-1",
            "kind": "canary",
            "component": "sendcloud/self-check",
            "target": f"http://{host}:{server.port}/",
            "timeout": 2,
            "settings": {"check": check},
        }
    )
    result = await probe(spec, session, log)
    assert result.ok is ok, result.error


async def test_cancellation_propagates(
    session: aiohttp.ClientSession, log: FilteringBoundLogger
) -> None:
    async with hung_server() as hung_url:
        spec = make_spec(hung_url, "http", "sendcloud/api", timeout=5)
        task = asyncio.ensure_future(probe(spec, session, log))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_hung_target_does_not_delay_a_fast_probe(
    sandbox: TestServer, session: aiohttp.ClientSession, log: FilteringBoundLogger
) -> None:
    async with hung_server() as hung_url:
        hung = make_spec(hung_url, "http", "sendcloud/api", id="hung", timeout=0.3)
        fast = make_spec(sandbox, "http", "sendcloud/api", id="fast")
        hung_result, fast_result = await asyncio.gather(
            probe(hung, session, log), probe(fast, session, log)
        )
    assert (hung_result.ok, hung_result.error) == (False, "timeout after 0.3s")
    assert fast_result.ok
    assert fast_result.latency_s is not None
    assert fast_result.latency_s < 0.15


async def test_credentials_never_show(
    sandbox: TestServer,
    session: aiohttp.ClientSession,
    log: FilteringBoundLogger,
    log_output: io.StringIO,
) -> None:
    await add_fault(sandbox, component="carriers/dhl", mode="error", seconds=60)
    specs = [make_spec(sandbox, kind, component) for kind, component, _ in GREEN]
    for spec in specs:
        await probe(spec, session, log)
    spec = specs[0]
    shown = [repr(spec), str(spec), repr(CREDENTIALS), str(CREDENTIALS), f"{CREDENTIALS}"]
    shown += [spec.model_dump_json(), str(spec.model_dump()), log_output.getvalue()]
    for text in shown:
        assert USERNAME not in text
        assert PASSWORD not in text
    assert repr(CREDENTIALS) == "Credentials(scheme='basic')"


# ------------------------------------------------------------------------------- the spec


def test_registry_covers_every_kind() -> None:
    assert set(PROBES) == set(OPTIONS) == {*PROBE_KINDS, "canary"}  # canary: self-check only


def test_spec_defaults_come_from_the_kind() -> None:
    spec = ProbeSpec(id="p", kind="http", component="sendcloud/api", target="http://x/")
    assert spec.target == "http://x"
    assert spec.settings == HttpOptions()
    assert (spec.interval, spec.timeout, spec.credentials) == (60.0, 10.0, None)
    spec = ProbeSpec.model_validate(
        {**spec.model_dump(), "interval": "2m", "timeout": "30s", "settings": {"max_latency": "5s"}}
    )
    assert (spec.interval, spec.timeout) == (120.0, 30.0)
    assert isinstance(spec.settings, HttpOptions)
    assert spec.settings.max_latency == 5.0


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"kind": "ping"}, "unknown probe kind 'ping'"),
        ({"component": "dhl"}, "bad component 'dhl'"),
        ({"target": "127.0.0.1:9465"}, "bad target"),
        ({"target": "https://key:secret@example.com"}, "put credentials in `credentials`"),
        ({"settings": {"paht": "/x"}}, "settings.paht\n  Extra inputs are not permitted"),
        ({"settings": {"expected_status": ["200"]}}, "settings.expected_status.0\n  Input should"),
        ({"timeout": "2m"}, "timeout (120s) exceeds interval (60s)"),
        ({"interval": "soon"}, "bad duration 'soon'"),
        ({"credentials": {"username": "u"}}, "credentials need a username and a password"),
        ({"credentials": {"token": "t", "username": "u", "password": "p"}}, "or a token"),
    ],
)
def test_bad_spec_is_refused(fields: dict[str, Any], error: str) -> None:
    base = {"id": "p", "kind": "http", "component": "sendcloud/api", "target": "http://x"}
    with pytest.raises(ValidationError) as caught:
        ProbeSpec.model_validate({**base, **fields})
    assert error in str(caught.value)


def test_token_credentials() -> None:
    token = Credentials.model_validate({"token": "tok-123"})
    assert token.authorization() == "Bearer tok-123"
    assert "tok-123" not in repr(token)


# -------------------------------------------------------------------------------- helpers


@contextlib.asynccontextmanager
async def hung_server() -> AsyncIterator[str]:
    """A raw TCP server that accepts and reads, and never answers; yields its URL."""

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(1024):
            pass
        writer.close()

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
