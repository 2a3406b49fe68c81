"""End to end on loopback: the sandbox as a real server, the daemon on a manual clock,
a real SQLite file. A 30-minute incident takes milliseconds."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from daemonkit import add_fault, clear_faults, crash, make_daemon, running, sqlite_url
from factories import T0

from detector.clock import ManualClock
from detector.daemon import Daemon
from detector.model import ComponentStatus, IncidentStatus
from detector.store import SqlStore

MIN = 60.0


pytestmark = pytest.mark.usefixtures("credentials")


async def minutes(daemon: Daemon, clock: ManualClock, count: int) -> None:
    for _ in range(count):
        clock.advance(MIN)
        await daemon.probe_all()
        await daemon.evaluate()


async def fail_then_crash(
    tmp_path: Path, sandbox: TestServer, clock: ManualClock, count: int
) -> None:
    """A daemon sees DHL fail for `count` minutes, writes its results, and dies."""
    first = make_daemon(tmp_path, sandbox, clock)
    await first.startup(schedule=False, serve=False)
    await add_fault(sandbox, "carriers/dhl")
    await minutes(first, clock, count)
    await first.flush()
    await crash(first)


async def test_fault_opens_an_incident_in_the_store_metrics_and_api(
    tmp_path: Path, sandbox: TestServer, clock: ManualClock
) -> None:
    daemon = make_daemon(tmp_path, sandbox, clock)
    async with running(daemon, schedule=False):
        await daemon.probe_all()
        await daemon.evaluate()
        await add_fault(sandbox, "carriers/dhl")
        await minutes(daemon, clock, 30)  # failing since minute 1: not yet 30 minutes
        store = daemon.store
        assert store is not None
        assert store.list_incidents(unresolved_only=True) == []
        await minutes(daemon, clock, 1)

        [incident] = store.list_incidents(unresolved_only=True)
        assert incident.opened_at == T0 + 31 * MIN
        assert incident.title == "DHL: label creation failing (DE, NL)"
        assert incident.component_status is ComponentStatus.MAJOR_OUTAGE
        assert "HTTP 503" not in incident.updates[0].body  # evidence, not raw errors
        # Public text only; the evidence (error_ratio (1) >= 0.9) travels in update.evidence.
        assert incident.updates[0].body == (
            "We are investigating problems creating labels with DHL in Germany and the Netherlands."
        )
        statuses = {c.id: c.status for c in store.list_components()}
        assert statuses["carriers/dhl"] is ComponentStatus.MAJOR_OUTAGE
        assert statuses["carriers/ups"] is ComponentStatus.OPERATIONAL

        metrics = daemon.metrics
        assert metrics.get("detector_incidents_open", {"rule": "carrier-label-creation"}) == 1
        opened = {"rule": "carrier-label-creation", "cause": "sustained"}
        assert metrics.get("detector_incidents_opened_total", opened) == 1
        one_hot = {"component": "carriers/dhl", "status": "major_outage"}
        assert metrics.get("detector_component_status", one_hot) == 1
        duration = {"rule": "carrier-label-creation", "component": "carriers/dhl"}
        assert metrics.get("detector_failure_duration_seconds", duration) == 30 * MIN
        failed = {
            "probe": "dhl-label-de",
            "kind": "label_creation",
            "component": "carriers/dhl",
            "result": "fail",
        }
        assert metrics.get("detector_probe_runs_total", failed) == 31

        url = f"http://127.0.0.1:{daemon.bound_port}/api/v2/incidents/unresolved.json"
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            body = await response.json()
        assert [i["name"] for i in body["incidents"]] == [incident.title]
        assert body["incidents"][0]["impact"] == "critical"

        await clear_faults(sandbox)
        await minutes(daemon, clock, 16)
        resolved = store.get_incident(incident.id)
        assert resolved.status is IncidentStatus.RESOLVED
        assert [u.status.value for u in resolved.updates][-2:] == ["monitoring", "resolved"]
        assert metrics.get("detector_failure_duration_seconds", duration) == 0


async def test_results_are_stored_in_batches_and_exported(
    tmp_path: Path, sandbox: TestServer, clock: ManualClock
) -> None:
    daemon = make_daemon(tmp_path, sandbox, clock)
    async with running(daemon, schedule=False, serve=False):
        await minutes(daemon, clock, 3)
        assert await daemon.flush() == 12  # 4 probes x 3 minutes, one batch
        assert daemon.store is not None
        events = list(daemon.store.export_events(T0, T0 + 10 * MIN))
        assert len(events) == 12
        assert {e.probe for e in events} == {  # type: ignore[union-attr]
            "api-user",
            "dhl-label-de",
            "dhl-label-nl",
            "ups-label-fr",
        }


async def test_restart_keeps_the_clock_and_never_duplicates(
    tmp_path: Path, sandbox: TestServer, clock: ManualClock
) -> None:
    await fail_then_crash(tmp_path, sandbox, clock, 15)  # failing since minute 1

    clock.advance(2 * MIN)  # down for two minutes, still failing
    second = make_daemon(tmp_path, sandbox, clock)
    async with running(second, schedule=False, serve=False):
        await minutes(second, clock, 14)  # minute 31
        assert second.store is not None
        [incident] = second.store.list_incidents(unresolved_only=True)
        assert incident.opened_at == T0 + 31 * MIN  # the original clock

    third = make_daemon(tmp_path, sandbox, clock)  # a clean restart with the incident open
    async with running(third, schedule=False, serve=False):
        await minutes(third, clock, 5)
        assert third.store is not None
        assert len(third.store.list_incidents()) == 1


async def test_downtime_counts_as_failing_only_if_the_failure_is_still_there(
    tmp_path: Path, sandbox: TestServer, clock: ManualClock
) -> None:
    await fail_then_crash(tmp_path, sandbox, clock, 20)

    await clear_faults(sandbox)
    clock.advance(40 * MIN)  # down past the deadline, but healed meanwhile
    second = make_daemon(tmp_path, sandbox, clock)
    async with running(second, schedule=False, serve=False):
        assert await second.evaluate() == []  # waits for fresh results first
        await minutes(second, clock, 10)
        assert second.store is not None
        assert second.store.list_incidents() == []


async def test_store_failure_keeps_probing_and_recovery_writes_the_buffer(
    tmp_path: Path, sandbox: TestServer, clock: ManualClock
) -> None:
    daemon = make_daemon(tmp_path, sandbox, clock)
    async with running(daemon, schedule=False, serve=False):
        writable = daemon.store
        assert writable is not None
        path = tmp_path / "detector.db"
        pipeline, control = daemon.pipeline, daemon.control
        assert pipeline is not None and control is not None
        pipeline.store = SqlStore(f"sqlite:///file:{path}?mode=ro&uri=true")
        await add_fault(sandbox, "carriers/dhl")
        await minutes(daemon, clock, 32)
        assert await daemon.flush() == 0
        errors = daemon.metrics.get("detector_store_errors_total")
        assert errors is not None and errors >= 2
        assert len(daemon.engine.open_incidents()) == 1  # decided, waiting to be written
        assert control.readiness()["store"] is False

        pipeline.store.close()
        pipeline.store = writable  # the disk is writable again
        assert await daemon.flush() == 32 * 4
        await daemon.evaluate()
        [incident] = writable.list_incidents(unresolved_only=True)
        assert incident.opened_at == T0 + 31 * MIN
        assert control.readiness()["store"] is True


async def test_write_api_deploy_flagged_bad_opens_at_once(
    tmp_path: Path, sandbox: TestServer, clock: ManualClock
) -> None:
    daemon = make_daemon(tmp_path, sandbox, clock)
    await daemon.startup(schedule=False)
    base = f"http://127.0.0.1:{daemon.bound_port}"
    headers = {"Authorization": "Bearer t0ken"}
    try:
        await daemon.probe_all()
        async with aiohttp.ClientSession(headers=headers) as session:
            deploy = {"id": "d-1", "service": "label-api", "version": "1", "components": []}
            deploy["components"] = ["carriers/ups"]
            async with session.post(f"{base}/api/v1/deploys", json=deploy) as response:
                assert response.status == 201, await response.text()
            clock.advance(20 * MIN)  # past the deploy window
            await add_fault(sandbox, "carriers/ups")
            await minutes(daemon, clock, 3)
            assert daemon.engine.open_incidents() == []
            async with session.post(f"{base}/api/v1/deploys/d-1/bad") as response:
                assert response.status == 200, await response.text()
        [incident] = daemon.engine.open_incidents()
        assert (incident.cause, incident.deploy, incident.component) == (
            "deploy",
            "d-1",
            "carriers/ups",
        )
    finally:
        await daemon.shutdown()


async def test_reload_rejects_a_bad_rule_file_and_keeps_running(
    tmp_path: Path, sandbox: TestServer, clock: ManualClock
) -> None:
    daemon = make_daemon(tmp_path, sandbox, clock)
    async with running(daemon, schedule=False, serve=False):
        await add_fault(sandbox, "carriers/dhl")
        await minutes(daemon, clock, 10)
        (tmp_path / "rules" / "broken.yaml").write_text("rules:\n  - name: x\n    windw: 5m\n")
        ok, message = await daemon.reload()
        assert not ok and "broken.yaml:3" in message
        assert daemon.metrics.get("detector_config_last_reload_successful") == 0
        (tmp_path / "rules" / "broken.yaml").unlink()
        ok, _ = await daemon.reload()
        assert ok
        assert daemon.metrics.get("detector_config_last_reload_successful") == 1
        await minutes(daemon, clock, 21)  # the episode kept its clock through both reloads
        [incident] = daemon.engine.open_incidents()
        assert incident.opened_at == T0 + 31 * MIN


def test_probe_phases_spread_over_the_interval_and_survive_a_restart() -> None:
    from detector.schedule import probe_phase
    from probes.base import ProbeSpec

    specs = [
        ProbeSpec(
            id=f"probe-{n}",
            kind="http",
            component="sendcloud/api",
            interval=60.0,
            timeout=5.0,
            target="http://127.0.0.1:1",
        )
        for n in range(6000)
    ]
    now = T0 + 17.3
    offsets = [probe_phase(spec, now) - now for spec in specs]
    assert all(0 <= offset < 60 for offset in offsets)
    per_ten_seconds = [sum(1 for o in offsets if k * 10 <= o < (k + 1) * 10) for k in range(6)]
    assert min(per_ten_seconds) > 800  # ~1000 each: no burst at start
    later = now + 3600 + 4.2  # a restart an hour later keeps every probe's second
    assert all(
        (probe_phase(spec, later) - probe_phase(spec, now)) % 60 == pytest.approx(0, abs=1e-6)
        or (probe_phase(spec, later) - probe_phase(spec, now)) % 60 == pytest.approx(60, abs=1e-6)
        for spec in specs[:50]
    )


async def test_operator_commands_go_through_the_running_daemon(
    tmp_path: Path,
    sandbox: TestServer,
    clock: ManualClock,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from detector.cli import main

    monkeypatch.setenv("DETECTOR_API_TOKEN", "t0ken")
    daemon = make_daemon(tmp_path, sandbox, clock)
    await daemon.startup(schedule=False)
    url = f"http://127.0.0.1:{daemon.bound_port}"
    db = sqlite_url(tmp_path)

    async def cli(*args: str) -> str:
        # The commands are blocking HTTP clients; the daemon serves on this loop.
        assert await asyncio.to_thread(main, list(args)) == 0, capsys.readouterr().err
        return capsys.readouterr().out

    try:
        await daemon.probe_all()
        await add_fault(sandbox, "carriers/dhl")
        await minutes(daemon, clock, 31)
        [incident] = daemon.engine.open_incidents()

        listing = await cli("incidents", "list", "--store", db, "--open")
        assert incident.id in listing and "DHL: label creation failing" in listing
        update = ["incidents", "update", incident.id, "--url", url]
        await cli(*update, "--status", "identified", "--body", "DHL API returns 503")
        shown = await cli("incidents", "show", incident.id, "--store", db)
        assert "identified" in shown and "DHL API returns 503" in shown

        deploy = ["deploy", "record", "--url", url, "--id", "d-9", "--service", "label-api"]
        await cli(*deploy, "--version", "9", "--components", "carriers/ups")
        await cli("deploy", "bad", "d-9", "--url", url)
        assert daemon.engine.calendar.flagged_at.get("d-9") == clock.now()

        start, end = "2026-11-28T12:00:00Z", "2026-11-28T13:00:00Z"
        added = await cli(
            "maintenance", "add", "--url", url, "--start", start, "--end", end,
            "--components", "carriers/ups", "--title", "UPS window",
        )  # fmt: skip
        maintenance_id = json.loads(added)["id"]
        assert "UPS window" in await cli("maintenance", "list", "--url", url)
        await cli("maintenance", "cancel", maintenance_id, "--url", url)
        assert maintenance_id not in daemon.engine.calendar.maintenances
    finally:
        await daemon.shutdown()
