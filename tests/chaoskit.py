"""Shared by the several-daemons tests: a PostgreSQL database per test, incidents, and
in-process daemons on one manual clock (tests/test_leader.py, tests/test_store_outage.py)."""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pg
from aiohttp.test_utils import TestServer
from daemonkit import RULES, write_config
from factories import T0

from detector.clock import ManualClock
from detector.daemon import Daemon
from detector.logs import configure
from detector.model import ComponentStatus, Incident, IncidentStatus, IncidentUpdate
from detector.settings import load_settings

MIN = 60.0
LONG_LEASE = "lease_ttl: 5m\n"  # tests that move in minutes: each step renews in time
_names = (f"leader_{os.getpid()}_{n}" for n in itertools.count())


def new_database(server_url: str) -> str:
    """A fresh database at the newest schema (the server's migrated template)."""
    return pg.create_database(server_url, next(_names), template=pg.DATABASE)


def incident(incident_id: str, at: float = T0, **changes: Any) -> Incident:
    major = ComponentStatus.MAJOR_OUTAGE
    fields: dict[str, Any] = {
        "id": incident_id,
        "rule": "carrier-label-creation",
        "component": "carriers/dhl",
        "title": "DHL: label creation failing",
        "cause": "sustained",
        "deploy": None,
        "impact": major,
        "status": IncidentStatus.INVESTIGATING,
        "component_status": major,
        "opened_at": at,
        "updates": [IncidentUpdate(at, IncidentStatus.INVESTIGATING, major, "failing")],
        "markets": (),
    }
    fields.update(changes)
    return Incident(**fields)


def make_daemon(
    tmp_path: Path,
    sandbox: TestServer,
    clock: ManualClock,
    store: str,
    instance: str,
    extra: str,
    rules: str = RULES,
) -> Daemon:
    """A daemon named `instance` on `store`; its monotonic clock is the manual clock too."""
    home = tmp_path / instance
    home.mkdir(exist_ok=True)
    config = write_config(
        home,
        str(sandbox.make_url("")).rstrip("/"),
        rules=rules,
        store=store,
        extra=f"instance: {instance}\n{extra}",
    )
    return Daemon(
        load_settings(config), log=configure("json", "error"), clock=clock, monotonic=clock.now
    )


async def start_pair(
    tmp_path: Path,
    sandbox: TestServer,
    clock: ManualClock,
    store: str,
    extra: str = LONG_LEASE,
    rules: str = RULES,
) -> tuple[Daemon, Daemon]:
    """Daemons `a` and `b` on one store, started without scheduler or API; `a` starts first,
    so it leads. The caller shuts them down (a test may crash or stop one first)."""
    a = make_daemon(tmp_path, sandbox, clock, store, "a", extra, rules)
    b = make_daemon(tmp_path, sandbox, clock, store, "b", extra, rules)
    await a.startup(schedule=False, serve=False)
    await b.startup(schedule=False, serve=False)
    return a, b


@asynccontextmanager
async def pair(
    tmp_path: Path,
    sandbox: TestServer,
    clock: ManualClock,
    store: str,
    extra: str = LONG_LEASE,
    rules: str = RULES,
) -> AsyncIterator[tuple[Daemon, Daemon]]:
    """`start_pair`, then shut down on the way out whichever of the two is still running (a
    test may stop or crash one itself), even when the test fails."""
    a, b = await start_pair(tmp_path, sandbox, clock, store, extra, rules)
    try:
        yield a, b
    finally:
        for daemon in (a, b):
            if daemon.sessions is not None:  # None: shut down or crashed already
                await daemon.shutdown()


async def fault(sandbox: TestServer, component: str, mode: str = "error") -> None:
    async with aiohttp.ClientSession() as session:
        body = {"component": component, "mode": mode, "seconds": 7200}
        async with session.post(sandbox.make_url("/_sandbox/faults"), json=body) as response:
            assert response.status in (200, 201), await response.text()


async def step(clock: ManualClock, daemons: list[Daemon], seconds: float = MIN) -> None:
    """One round: time moves, every daemon probes, writes, renews its lease and evaluates."""
    clock.advance(seconds)
    for daemon in daemons:
        await daemon.probe_all()
        await daemon.flush()
    for daemon in daemons:
        await daemon.lead()
        await daemon.evaluate()


# ------------------------------------------------------------------ the chaos rig (subprocesses)

CHAOS_RULES = """
defaults: {window: 4s, open_after: 8s, resolve_after: 2s}
rules:
  - name: carrier-label-creation
    match: {kind: label_creation, component: "carriers/*"}
    impact:
      - {status: major_outage, when: error_ratio >= 0.5}
"""
CARRIERS = ("dhl", "ups", "postnl")
PROBE_INTERVAL = 1.0
EVALUATION_INTERVAL = 0.5
LEASE_TTL = 3.0
OPEN_AFTER = 8.0
WINDOW = 4.0


def chaos_config(home: Path, instance: str, store: str, sandbox_port: int) -> Path:
    """Demo-style timings in seconds; the store URL names the instance to PostgreSQL, so a
    test can cut exactly this daemon's connections."""
    rules = home / "rules"
    rules.mkdir(parents=True, exist_ok=True)
    (rules / "chaos.yaml").write_text(CHAOS_RULES)
    components = "\n".join(f"  - {{id: carriers/{c}, name: {c.upper()}}}" for c in CARRIERS)
    probes = "\n".join(
        f"  - {{id: {c}-label, kind: label_creation, component: carriers/{c},"
        f" labels: {{market: DE}}, settings: {{download_label: false}}}}"
        for c in CARRIERS
    )
    config = home / f"{instance}.yaml"
    config.write_text(
        f"""listen: 127.0.0.1:0
store: {store}?application_name={instance}
rules: [rules/]
instance: {instance}
evaluation_interval: {EVALUATION_INTERVAL}s
flush_interval: 0.5s
lease_ttl: {LEASE_TTL}s
shutdown_grace: 1s
log_format: json
log_level: info
api_token_env: TEST_DETECTOR_TOKEN
probe_defaults:
  target: http://127.0.0.1:{sandbox_port}
  interval: {PROBE_INTERVAL}s
  timeout: 1s
  credentials: {{username_env: TEST_SANDBOX_USER, password_env: TEST_SANDBOX_PASS}}
components:
{components}
probes:
{probes}
"""
    )
    return config
