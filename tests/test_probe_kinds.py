"""Every probe kind against the real sandbox on loopback: green, red, slow, lagging."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from daemonkit import add_fault
from probekit import GREEN, USERNAME, hung_server, make_spec, probe
from pytest_aiohttp import AiohttpServer
from structlog.typing import FilteringBoundLogger

from detector.clock import ManualClock
from detector.sandbox import SANDBOX, make_app


@pytest.mark.parametrize(("kind", "component", "fields"), GREEN)
async def test_probe_is_green_against_a_healthy_sandbox(
    probe_sandbox: TestServer,
    session: aiohttp.ClientSession,
    log: FilteringBoundLogger,
    kind: str,
    component: str,
    fields: dict[str, Any],
) -> None:
    spec = make_spec(probe_sandbox, kind, component, **fields)
    result = await probe(spec, session, log)
    assert (result.ok, result.error) == (True, None)
    assert (result.probe, result.kind, result.component) == (spec.id, kind, component)
    assert result.labels == spec.labels
    assert result.latency_s is not None
    assert 0 < result.latency_s < 2
    assert set(result.phases) == {"dns", "connect", "request", "first_byte"}
    assert result.phases["first_byte"] > 0


async def test_label_probe_leaves_no_parcel_behind(
    probe_sandbox: TestServer, session: aiohttp.ClientSession, log: FilteringBoundLogger
) -> None:
    spec = make_spec(probe_sandbox, "label_creation", "carriers/dhl", labels={"market": "FR"})
    for _ in range(3):
        assert (await probe(spec, session, log)).ok
    parcels = probe_sandbox.app[SANDBOX].parcels.values()
    assert len(parcels) == 3
    assert all(p.cancelled_at is not None and p.country == "FR" for p in parcels)


async def test_result_time_comes_from_the_clock(
    probe_sandbox: TestServer, session: aiohttp.ClientSession, log: FilteringBoundLogger
) -> None:
    clock = ManualClock(1_000.0)
    result = await probe(make_spec(probe_sandbox, "http", "sendcloud/api"), session, log, clock)
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
    probe_sandbox: TestServer,
    session: aiohttp.ClientSession,
    log: FilteringBoundLogger,
    kind: str,
    component: str,
    fields: dict[str, Any],
    fault: dict[str, Any],
    error: str,
) -> None:
    await add_fault(probe_sandbox, mode="error", seconds=600, **fault)
    result = await probe(make_spec(probe_sandbox, kind, component, **fields), session, log)
    assert (result.ok, result.result) == (False, "fail")  # the target answered, wrongly
    assert result.error is not None
    assert result.error.startswith(error)


async def test_market_fault_leaves_other_markets_green(
    probe_sandbox: TestServer, session: aiohttp.ClientSession, log: FilteringBoundLogger
) -> None:
    await add_fault(probe_sandbox, component="carriers/dhl", mode="error", seconds=600, market="DE")
    spec = make_spec(probe_sandbox, "label_creation", "carriers/dhl", labels={"market": "NL"})
    assert (await probe(spec, session, log)).ok


async def test_timeout_fault_ends_at_the_hard_timeout(
    probe_sandbox: TestServer, session: aiohttp.ClientSession, log: FilteringBoundLogger
) -> None:
    await add_fault(probe_sandbox, component="carriers/dhl", mode="timeout", seconds=600)
    spec = make_spec(probe_sandbox, "label_creation", "carriers/dhl", timeout=0.3)
    result = await probe(spec, session, log)
    assert (result.ok, result.error, result.result) == (False, "timeout after 0.3s", "error")
    assert result.latency_s is not None
    assert 0.3 <= result.latency_s < 0.5


async def test_http_latency_bound(
    probe_sandbox: TestServer, session: aiohttp.ClientSession, log: FilteringBoundLogger
) -> None:
    await add_fault(probe_sandbox, component="sendcloud/panel", mode="slow", seconds=600)
    settings = {"path": "/panel/", "max_latency": "100ms"}
    result = await probe(
        make_spec(probe_sandbox, "http", "sendcloud/panel", settings=settings), session, log
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
    probe_sandbox: TestServer,
    session: aiohttp.ClientSession,
    log: FilteringBoundLogger,
    settings: dict[str, Any],
    error: str,
) -> None:
    result = await probe(
        make_spec(probe_sandbox, "http", "sendcloud/api", settings=settings), session, log
    )
    assert (result.ok, result.error) == (False, error)


async def test_label_check_failure_still_cancels_the_parcel(
    probe_sandbox: TestServer, session: aiohttp.ClientSession, log: FilteringBoundLogger
) -> None:
    settings = {"label_path": "/api/v2/missing/{parcel_id}"}
    spec = make_spec(probe_sandbox, "label_creation", "carriers/dhl", settings=settings)
    result = await probe(spec, session, log)
    assert result.error == "HTTP 404 on GET /api/v2/missing/1"
    [parcel] = probe_sandbox.app[SANDBOX].parcels.values()
    assert parcel.cancelled_at is not None


async def test_hard_timeout_after_create_still_cancels_the_parcel(
    probe_sandbox: TestServer, session: aiohttp.ClientSession, log: FilteringBoundLogger
) -> None:
    async with hung_server() as hung_url:
        settings = {"label_path": hung_url + "/labels/{parcel_id}"}
        spec = make_spec(
            probe_sandbox, "label_creation", "carriers/dhl", timeout=0.3, settings=settings
        )
        result = await probe(spec, session, log)
        assert (result.ok, result.error, result.result) == (False, "timeout after 0.3s", "error")
        [parcel] = probe_sandbox.app[SANDBOX].parcels.values()
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
    probe_sandbox: TestServer, session: aiohttp.ClientSession, log: FilteringBoundLogger
) -> None:
    result = await probe(make_spec(probe_sandbox, "order_import", "integrations/zz"), session, log)
    assert result.error == "integration 'zz' not in GET /api/v3/integrations"


async def test_tracking_needs_a_carrier_for_platform_components(
    probe_sandbox: TestServer, session: aiohttp.ClientSession, log: FilteringBoundLogger
) -> None:
    result = await probe(make_spec(probe_sandbox, "tracking", "sendcloud/tracking"), session, log)
    assert result.error == "settings.carrier is required for component sendcloud/tracking"
