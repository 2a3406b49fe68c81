"""Shared by the several-daemons tests: a PostgreSQL database per test, incidents, and
in-process daemons on one manual clock (tests/test_leader.py, tests/test_store_outage.py)."""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Any

import aiohttp
import pg
from aiohttp.test_utils import TestServer
from daemonkit import write_config

from detector.clock import ManualClock
from detector.daemon import Daemon
from detector.logs import configure
from detector.model import ComponentStatus, Incident, IncidentStatus, IncidentUpdate
from detector.settings import load_settings

T0 = 1_795_860_000.0
MIN = 60.0
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
    tmp_path: Path, sandbox: TestServer, clock: ManualClock, store: str, instance: str, extra: str
) -> Daemon:
    """A daemon named `instance` on `store`; its monotonic clock is the manual clock too."""
    home = tmp_path / instance
    home.mkdir(exist_ok=True)
    config = write_config(
        home,
        str(sandbox.make_url("")).rstrip("/"),
        store=store,
        extra=f"instance: {instance}\n{extra}",
    )
    return Daemon(
        load_settings(config), log=configure("json", "error"), clock=clock, monotonic=clock.now
    )


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


async def crash(daemon: Daemon) -> None:
    """`kill -9` as the others see it: nothing more is written or renewed."""
    assert daemon.store is not None and daemon.session is not None
    daemon.store.close()
    await daemon.session.close()
