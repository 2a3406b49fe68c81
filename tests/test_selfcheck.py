"""Self-check end to end on loopback: canaries on a server that fails on demand, the daemon
on a manual clock; suspect results are stamped, stored, counted and logged."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from daemonkit import json_log, running, write_config
from factories import T0

from detector.clock import ManualClock
from detector.daemon import Daemon
from detector.settings import load_settings

pytestmark = pytest.mark.usefixtures("credentials")


class Outside:
    """Three "other networks": each canary path answers 200, or 503 while broken."""

    def __init__(self) -> None:
        self.broken: set[str] = set()

    async def answer(self, request: web.Request) -> web.Response:
        return web.Response(status=503 if request.match_info["name"] in self.broken else 200)


@pytest.fixture
async def outside() -> AsyncIterator[tuple[Outside, TestServer]]:
    state = Outside()
    app = web.Application()
    app.router.add_get("/{name}", state.answer)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield state, server
    await server.close()


def events(out: io.StringIO, name: str) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    return [line for line in lines if line["event"] == name]


async def test_most_canaries_failing_makes_every_result_suspect(
    tmp_path: Path,
    sandbox: TestServer,
    outside: tuple[Outside, TestServer],
    clock: ManualClock,
) -> None:
    state, server = outside
    base = str(server.make_url("")).rstrip("/")
    canaries = "\n".join(f"    - {{id: {n}, target: '{base}/{n}'}}" for n in ("a", "b", "c"))
    config = write_config(
        tmp_path,
        str(sandbox.make_url("")).rstrip("/"),
        extra=f"instance: ams-1\nself_check:\n  canaries:\n{canaries}\n",
    )
    out = io.StringIO()
    daemon = Daemon(load_settings(config), log=json_log(out), clock=clock)
    async with running(daemon, schedule=False, serve=False):
        healthy = await daemon.probe_all()
        assert {(r.instance, r.suspect) for r in healthy} == {("ams-1", False)}
        assert daemon.metrics.get("detector_self_check_ok") == 1

        state.broken = {"a"}  # one of three: the platform may be down, we are fine
        clock.advance(60)
        assert not any(r.suspect for r in await daemon.probe_all())
        assert daemon.metrics.get("detector_self_check_ok") == 1

        state.broken = {"a", "b"}  # most of them: it is us
        clock.advance(60)
        suspect = await daemon.probe_all()
        assert all(r.suspect and r.instance == "ams-1" for r in suspect)
        assert daemon.metrics.get("detector_self_check_ok") == 0
        [failed] = events(out, "self_check_failed")
        assert failed["level"] == "warning"
        assert failed["reasons"] == {"a": "HTTP 503 on GET /a", "b": "HTTP 503 on GET /b"}

        state.broken = set()
        clock.advance(60)
        assert not any(r.suspect for r in await daemon.probe_all())
        assert daemon.metrics.get("detector_self_check_ok") == 1
        assert len(events(out, "self_check_recovered")) == 1

        assert await daemon.flush() == 16
        assert daemon.store is not None
        stored = daemon.store.results_since(0)
        assert [r.suspect for r in stored].count(True) == 4  # stored and exported as such
        assert {r.instance for r in stored} == {"ams-1"}
        assert all(r.kind != "canary" for r in stored)  # canaries judge us, not the platform


async def test_no_canaries_means_never_suspect(
    tmp_path: Path, sandbox: TestServer, clock: ManualClock
) -> None:
    config = write_config(tmp_path, str(sandbox.make_url("")).rstrip("/"))
    daemon = Daemon(load_settings(config), log=json_log(io.StringIO()), clock=clock)
    async with running(daemon, schedule=False, serve=False):
        assert not any(r.suspect for r in await daemon.probe_all())
        assert daemon.metrics.get("detector_self_check_ok") == 1


def test_a_reload_that_removes_the_failing_canaries_clears_the_verdict() -> None:
    from detector.metrics import Metrics
    from detector.model import ProbeResult
    from detector.selfcheck import SelfCheck

    out = io.StringIO()
    metrics = Metrics()
    check = SelfCheck(["a", "b", "c"], metrics=metrics, log=json_log(out))
    for canary in ("a", "b"):
        check.observe(ProbeResult(T0, canary, "canary", "sendcloud/self-check", False, error="x"))
    assert check.suspect and metrics.get("detector_self_check_ok") == 0
    check.set_canaries(["c"])  # a reload replaced the broken ones
    assert not check.suspect and metrics.get("detector_self_check_ok") == 1
    check.set_canaries([])
    assert not check.suspect
    assert [e["event"] for e in map(json.loads, out.getvalue().splitlines())] == [
        "self_check_failed",
        "self_check_recovered",
    ]
