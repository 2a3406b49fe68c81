"""Statuspage v2 contract per maintenance state (scheduled, in_progress, verifying,
completed) on every maintenance endpoint, and the postmortem fields, over HTTP."""

from __future__ import annotations

from apikit import NOW, Client, commit, open_incident

from detector.model import IncidentStatus, Maintenance
from detector.store.sql import SqlStore
from detector.web.app import SNAPSHOTS


def windows(store: SqlStore) -> None:
    dhl, ups = ("carriers/dhl",), ("carriers/ups",)
    store.add_maintenance(Maintenance(NOW + 3600, NOW + 7200, ups, "Later", "m-scheduled"))
    store.add_maintenance(Maintenance(NOW - 600, NOW + 600, ups, "Now", "m-in-progress"))
    # ended, but DHL has been failing since (open_incident: major outage from NOW - 1800)
    store.add_maintenance(Maintenance(NOW - 3600, NOW - 1200, dhl, "DHL", "m-verifying"))
    store.add_maintenance(Maintenance(NOW - 7200, NOW - 3600, ups, "Done", "m-completed"))
    commit(store, open_incident())


async def listed(client: Client, path: str) -> dict[str, str]:
    payload = await (await client.get(f"/api/v2/{path}")).json()
    return {m["id"]: m["status"] for m in payload["scheduled_maintenances"]}


async def test_every_state_on_every_maintenance_endpoint(client: Client, store: SqlStore) -> None:
    windows(store)
    assert await listed(client, "scheduled-maintenances.json") == {
        "m-scheduled": "scheduled",
        "m-in-progress": "in_progress",
        "m-verifying": "verifying",
        "m-completed": "completed",
    }
    assert await listed(client, "scheduled-maintenances/upcoming.json") == {
        "m-scheduled": "scheduled"
    }
    assert await listed(client, "scheduled-maintenances/active.json") == {
        "m-in-progress": "in_progress",
        "m-verifying": "verifying",
    }
    assert await listed(client, "summary.json") == {
        "m-scheduled": "scheduled",
        "m-in-progress": "in_progress",
    }


async def test_a_verifying_window_and_how_it_completes(client: Client, store: SqlStore) -> None:
    windows(store)
    payload = await (await client.get("/api/v2/scheduled-maintenances.json")).json()
    shaped = {m["id"]: m for m in payload["scheduled_maintenances"]}
    verifying = shaped["m-verifying"]
    assert verifying["resolved_at"] is None
    assert verifying["updated_at"] == "2026-11-28T09:40:00Z"  # the window's end
    newest = verifying["incident_updates"][0]
    assert newest["status"] == "verifying"
    change = newest["affected_components"][0]
    assert (change["old_status"], change["new_status"]) == ("under_maintenance", "major_outage")
    assert shaped["m-completed"]["resolved_at"] == "2026-11-28T09:00:00Z"
    html = await (await client.get("/")).text()
    section = html[html.index('id="maintenance"') : html.index('id="components"')]
    assert "Verifying" in section and "In progress" in section and "Done" not in section
    # once DHL is back, the window is completed
    store.add_incident_update("inc-1", IncidentStatus.RESOLVED, "Fixed.", NOW)
    client.app[SNAPSHOTS].invalidate()  # as the daemon's commit does
    assert (await listed(client, "scheduled-maintenances.json"))["m-verifying"] == "completed"


async def test_postmortem_fields_are_null(client: Client, store: SqlStore) -> None:
    windows(store)
    for path, key in [
        ("incidents.json", "incidents"),
        ("incidents/unresolved.json", "incidents"),
        ("summary.json", "incidents"),
        ("scheduled-maintenances.json", "scheduled_maintenances"),
    ]:
        items = (await (await client.get(f"/api/v2/{path}")).json())[key]
        assert items, path
        for item in items:
            assert item["postmortem_body"] is None, path
            assert item["postmortem_body_last_updated_at"] is None, path
