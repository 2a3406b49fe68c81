"""The runner's promises, whatever the probe does: refused, raising, hung, cancelled, a
503 that mentions a timeout - each is a result with the right outcome, and no secret shows."""

from __future__ import annotations

import asyncio
import io
import logging
from typing import Any

import aiohttp
import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestServer
from daemonkit import add_fault, free_port, log_into
from probekit import CREDENTIALS, GREEN, PASSWORD, USERNAME, hung_server, make_spec, probe
from pytest_aiohttp import AiohttpServer
from structlog.typing import FilteringBoundLogger

from detector.clock import SystemClock
from detector.model import ProbeResult
from probes import PROBES, ProbeSpec, run_probe


async def test_refused_connection_is_a_result(
    session: aiohttp.ClientSession, log: FilteringBoundLogger
) -> None:
    port = free_port()
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
    probe_sandbox: TestServer, session: aiohttp.ClientSession, log: FilteringBoundLogger
) -> None:
    async with hung_server() as hung_url:
        hung = make_spec(hung_url, "http", "sendcloud/api", id="hung", timeout=0.3)
        fast = make_spec(probe_sandbox, "http", "sendcloud/api", id="fast")
        hung_result, fast_result = await asyncio.gather(
            probe(hung, session, log), probe(fast, session, log)
        )
    assert (hung_result.ok, hung_result.error) == (False, "timeout after 0.3s")
    assert fast_result.ok
    assert fast_result.latency_s is not None
    assert fast_result.latency_s < 0.15


async def test_credentials_never_show(
    probe_sandbox: TestServer,
    session: aiohttp.ClientSession,
    log: FilteringBoundLogger,
    log_output: io.StringIO,
) -> None:
    await add_fault(probe_sandbox, component="carriers/dhl", mode="error", seconds=60)
    specs = [make_spec(probe_sandbox, kind, component) for kind, component, _ in GREEN]
    for spec in specs:
        await probe(spec, session, log)
    spec = specs[0]
    shown = [repr(spec), str(spec), repr(CREDENTIALS), str(CREDENTIALS), f"{CREDENTIALS}"]
    shown += [spec.model_dump_json(), str(spec.model_dump()), log_output.getvalue()]
    for text in shown:
        assert USERNAME not in text
        assert PASSWORD not in text
    assert repr(CREDENTIALS) == "Credentials(scheme='basic')"


@pytest.mark.parametrize("level", [logging.DEBUG, logging.INFO])
async def test_probe_finished_is_logged_at_debug_only(
    session: aiohttp.ClientSession, level: int
) -> None:
    """The per-run debug event (skipped unbuilt above debug: it costs ~1 µs a run)."""
    output = io.StringIO()
    log = log_into(output, structlog.processors.KeyValueRenderer(), level=level)
    port = free_port()
    result = await probe(
        make_spec(f"http://127.0.0.1:{port}", "http", "sendcloud/api"), session, log
    )
    assert result.result == "error"
    logged = "event='probe_finished'" in output.getvalue()
    assert logged == (level == logging.DEBUG)
    if logged:
        assert "ok=False" in output.getvalue() and "probe='" in output.getvalue()
