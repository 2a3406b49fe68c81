"""Phase tracing only where it matters (probes/tracing.py): a healthy fast run goes out on
the untraced session; the run after a failed or slow one goes out on the traced session and
carries `phases`; both sessions share one connection pool and close cleanly."""

from __future__ import annotations

import asyncio
import gc
import warnings
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from daemonkit import make_daemon, running

from detector.clock import ManualClock
from detector.daemon import Daemon
from probes.base import ProbeSpec
from probes.tracing import SLOW_SHARE

pytestmark = pytest.mark.usefixtures("credentials")

PHASES = {"dns", "connect", "request", "first_byte"}


@dataclass
class Target:
    """A loopback target whose answer the test sets; records the client ports it saw."""

    status: int = 200
    delay: float = 0.0  # seconds before answering (a slow target)
    peers: set[int] = field(default_factory=set)


@pytest.fixture
def target() -> Target:
    return Target()


@pytest.fixture
async def server(target: Target) -> AsyncIterator[TestServer]:
    async def answer(request: web.Request) -> web.Response:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        if peer:
            target.peers.add(peer[1])
        if target.delay:
            await asyncio.sleep(target.delay)
        return web.json_response({"user": {"username": "probe"}}, status=target.status)

    app = web.Application()
    app.router.add_get("/{tail:.*}", answer)
    test_server = TestServer(app, host="127.0.0.1")
    await test_server.start_server()
    yield test_server
    await test_server.close()


@pytest.fixture
async def daemon(tmp_path: Path, server: TestServer, clock: ManualClock) -> AsyncIterator[Daemon]:
    # A 5 s timeout: only a run of 1.25 s or more is slow, so a loaded machine cannot make
    # a healthy loopback run look slow.
    built = make_daemon(tmp_path, server, clock, timeout="5s")
    async with running(built, schedule=False, serve=False) as started:
        yield started


@pytest.fixture
async def quick_daemon(
    tmp_path: Path, server: TestServer, clock: ManualClock
) -> AsyncIterator[Daemon]:
    # A 200 ms timeout: a run of 50 ms or more is slow (SLOW_SHARE of it).
    built = make_daemon(tmp_path, server, clock, timeout="200ms")
    async with running(built, schedule=False, serve=False) as started:
        yield started


def api_probe(daemon: Daemon) -> ProbeSpec:
    return next(s for s in daemon.settings.probe_specs if s.id == "api-user")


async def test_a_healthy_fast_run_uses_no_trace(daemon: Daemon) -> None:
    spec = api_probe(daemon)
    assert daemon.sessions is not None
    for _ in range(3):
        assert daemon.sessions.session_for(spec) is daemon.sessions.plain
        result = await daemon.probe_once(spec)
        assert result.ok, result.error
        assert result.phases == {}  # only the trace callbacks fill it
    assert daemon.sessions.watched == set()


async def test_the_runs_after_a_failure_carry_phases_until_one_is_healthy(
    daemon: Daemon, target: Target
) -> None:
    spec = api_probe(daemon)
    target.status = 503
    first = await daemon.probe_once(spec)
    assert not first.ok and first.error and first.error.startswith("HTTP 503")
    assert first.phases == {}  # nobody knew this run would fail
    second = await daemon.probe_once(spec)  # still failing: traced
    assert not second.ok
    assert set(second.phases) == PHASES
    assert second.phases["first_byte"] > 0
    target.status = 200
    recovered = await daemon.probe_once(spec)  # traced: its previous run failed
    assert recovered.ok and set(recovered.phases) == PHASES
    healthy = await daemon.probe_once(spec)
    assert healthy.ok and healthy.phases == {}


async def test_the_run_after_a_slow_one_carries_phases(
    quick_daemon: Daemon, target: Target
) -> None:
    daemon = quick_daemon
    spec = api_probe(daemon)
    target.delay = spec.timeout * SLOW_SHARE + 0.02
    slow = await daemon.probe_once(spec)
    assert slow.ok and slow.latency_s is not None
    assert slow.latency_s >= spec.timeout * SLOW_SHARE
    assert slow.phases == {}
    target.delay = 0.0
    after = await daemon.probe_once(spec)
    assert after.ok and set(after.phases) == PHASES


async def test_a_timed_out_run_makes_the_next_one_traced(
    quick_daemon: Daemon, target: Target
) -> None:
    daemon = quick_daemon
    spec = api_probe(daemon)
    target.delay = spec.timeout + 0.1
    timed_out = await daemon.probe_once(spec)
    assert timed_out.result == "error" and timed_out.error == "timeout after 0.2s"
    target.delay = 0.0
    after = await daemon.probe_once(spec)
    assert after.ok and set(after.phases) == PHASES


async def test_traced_and_untraced_runs_share_one_connection_pool(
    tmp_path: Path, server: TestServer, clock: ManualClock, target: Target
) -> None:
    built = make_daemon(tmp_path, server, clock, timeout="5s")
    async with running(built, schedule=False, serve=False) as daemon:
        sessions = daemon.sessions
        assert sessions is not None
        assert sessions.traced.connector is sessions.plain.connector
        spec = api_probe(daemon)
        target.status = 503
        await daemon.probe_once(spec)  # untraced, fails
        target.status = 200
        assert (await daemon.probe_once(spec)).phases  # traced
        assert (await daemon.probe_once(spec)).phases == {}  # untraced again
        assert len(target.peers) == 1  # one keep-alive connection served all three
    assert sessions.plain.closed and sessions.traced.closed
    assert daemon.sessions is None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del sessions
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]


async def test_closing_the_pool_owner_closes_both_sessions(daemon: Daemon) -> None:
    # Closing the untraced session, which owns the pool, leaves nothing open.
    assert daemon.sessions is not None
    await daemon.sessions.plain.close()
    assert daemon.sessions.traced.closed


async def test_a_reload_forgets_probes_no_longer_configured(daemon: Daemon, target: Target) -> None:
    spec = api_probe(daemon)
    target.status = 503
    await daemon.probe_once(spec)
    assert daemon.sessions is not None and daemon.sessions.watched == {spec.id}
    others = [s for s in daemon.settings.probe_specs if s.id != spec.id]
    settings = daemon.settings.model_copy(update={"probe_specs": tuple(others)})
    await daemon.apply(settings, tuple(daemon.engine.rules.values()))
    assert daemon.sessions.watched == set()
