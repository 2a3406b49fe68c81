"""On-call opens an incident by hand (`POST /api/v1/incidents`, `detector incidents open`) for
what the probes do not cover: it shows on the page and in the v2 JSON, sets the component's
status, survives a restart, no evaluation resolves it, and the update endpoint moves it on."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from daemonkit import CREDENTIALS, make_daemon, running

from detector.cli import main
from detector.clock import ManualClock
from detector.daemon import Daemon

pytestmark = pytest.mark.usefixtures("credentials")
AUTH = {"Authorization": f"Bearer {CREDENTIALS['TEST_DETECTOR_TOKEN']}"}
OPEN = {
    "component": "carriers/ups",
    "title": "UPS pickups delayed in France",
    "body": "UPS reports delayed pickups in France; labels are created as usual.",
    "component_status": "partial_outage",
}


async def call(daemon: Daemon, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    url = f"http://127.0.0.1:{daemon.bound_port}{path}"
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url, json=body, headers=AUTH) as response,
    ):
        if response.content_type == "application/json":
            return response.status, await response.json()
        return response.status, await response.text()


async def ups_status(daemon: Daemon) -> str:
    _, summary = await call(daemon, "GET", "/api/v2/summary.json")
    [ups] = [c for c in summary["components"] if c["name"] == "UPS"]
    return str(ups["status"])


async def test_a_manual_incident_lives_like_any_other(
    tmp_path: Path, sandbox: TestServer, clock: ManualClock
) -> None:
    first = make_daemon(tmp_path, sandbox, clock)
    async with running(first, schedule=False):
        status, opened = await call(first, "POST", "/api/v1/incidents", OPEN)
        assert status == 201, opened
        assert (opened["status"], opened["component_status"]) == ("investigating", "partial_outage")
        assert await ups_status(first) == "partial_outage"
        _, unresolved = await call(first, "GET", "/api/v2/incidents/unresolved.json")
        [shown] = unresolved["incidents"]
        assert (shown["id"], shown["name"]) == (opened["id"], OPEN["title"])
        assert shown["incident_updates"][0]["body"] == OPEN["body"]
        _, page = await call(first, "GET", "/")
        assert OPEN["title"] in page
        again = await call(first, "POST", "/api/v1/incidents", OPEN)
        assert again[0] == 409 and "open already" in again[1]["error"]
        await first.probe_all()  # healthy probes: no evaluation resolves what on-call opened
        clock.advance(3600)
        await first.evaluate()
        assert await ups_status(first) == "partial_outage"
    second = make_daemon(tmp_path, sandbox, clock)
    async with running(second, schedule=False):
        assert await ups_status(second) == "partial_outage"  # restored with the engine state
        path = f"/api/v1/incidents/{opened['id']}/updates"
        status, _ = await call(second, "POST", path, {"status": "identified", "body": "Known."})
        assert status == 201
        assert await ups_status(second) == "partial_outage"
        status, _ = await call(second, "POST", path, {"status": "resolved", "body": "Back."})
        assert status == 201
        assert await ups_status(second) == "operational"
        _, unresolved = await call(second, "GET", "/api/v2/incidents/unresolved.json")
        assert unresolved["incidents"] == []
        trail = [(e.actor, e.action) for e in second.store.list_audit()]  # type: ignore[union-attr]
        assert trail == [
            ("default", "incident.update"),
            ("default", "incident.update"),
            ("default", "incident.open"),
        ]


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"component": "carriers/nope"}, "components: unknown component 'carriers/nope'"),
        ({"component": "no slash"}, "component: invalid characters or format"),
        ({"status": "resolved"}, "status: expected one of investigating"),
        ({"component_status": "operational"}, "component_status: expected one of"),
        ({"title": ""}, "title: must not be empty"),
        ({"body": "x" * 5001}, "body: longer than 5000 characters"),
        ({"impact": "major"}, "impact: unknown field"),
    ],
)
async def test_bad_manual_incidents_are_400_naming_the_field(
    tmp_path: Path, sandbox: TestServer, clock: ManualClock, change: dict[str, Any], error: str
) -> None:
    daemon = make_daemon(tmp_path, sandbox, clock)
    async with running(daemon, schedule=False):
        status, reply = await call(daemon, "POST", "/api/v1/incidents", {**OPEN, **change})
        assert (status, reply["error"][: len(error)]) == (400, error)
        assert await ups_status(daemon) == "operational"


async def test_detector_incidents_open(
    tmp_path: Path, sandbox: TestServer, clock: ManualClock, capsys: pytest.CaptureFixture[str]
) -> None:
    daemon = make_daemon(tmp_path, sandbox, clock)
    async with running(daemon, schedule=False):
        url = f"http://127.0.0.1:{daemon.bound_port}"
        config = str(tmp_path / "detector.yaml")  # its api_token_env names the token
        command = ["incidents", "open", "--url", url, "--config", config,
                   "--component", "carriers/dhl", "--title", "DHL returns portal down",
                   "--body", "Returns cannot be booked.",
                   "--component-status", "degraded_performance"]  # fmt: skip
        assert await asyncio.to_thread(main, command) == 0
        assert '"component_status": "degraded_performance"' in capsys.readouterr().out
        assert await asyncio.to_thread(main, command) != 0  # one per component at a time
        assert "open already" in capsys.readouterr().err
