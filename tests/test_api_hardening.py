"""Hostile and broken input at the HTTP edge: times outside any sane range, stored rows no
reader could format, odd bytes in headers, control characters in public text, and the
security headers every response carries."""

from __future__ import annotations

from typing import Any

import apikit
import pytest
from apikit import AUTH, NOW, Client, commit, open_incident

from detector.model import Deploy, IncidentStatus, IncidentUpdate, Maintenance
from detector.store.sql import SqlStore
from detector.timeutil import TimeFormatError, parse_time

client, make_client, store, control, clock, metrics = apikit.FIXTURES

FAR_FUTURE, FAR_PAST = "9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00"
PUBLIC_READS = [
    "/",
    "/api/v2/summary.json",
    "/api/v2/status.json",
    "/api/v2/components.json",
    "/api/v2/incidents.json",
    "/api/v2/incidents/unresolved.json",
    "/api/v2/scheduled-maintenances.json",
]
WINDOW = {"start": "2026-11-28T12:00:00Z", "end": "2026-11-28T13:00:00Z",
          "components": ["carriers/dhl"], "title": "DHL work"}  # fmt: skip
DEPLOY = {"service": "label-api", "version": "1", "components": ["carriers/dhl"]}


def stored(store: SqlStore) -> tuple[Any, ...]:
    """Everything a write could have changed."""
    incidents = store.list_incidents(limit=1000)
    return (
        store.list_maintenances(ending_after=0.0),
        store.recent_deploys(0.0),
        [(i.id, i.status, len(i.updates)) for i in incidents],
    )


async def all_reads_answer(client: Client) -> None:
    for path in PUBLIC_READS:
        response = await client.get(path)
        assert response.status == 200, (path, await response.text())


# ---------------------------------------------------------------------------- time range


@pytest.mark.parametrize(
    "text", [FAR_FUTURE, FAR_PAST, "1969-12-31T23:59:59Z", "9000-01-01T00:00:00Z"]
)
def test_parse_time_refuses_instants_outside_the_sane_range(text: str) -> None:
    with pytest.raises(TimeFormatError, match=r"outside years 1970\.\.8999"):
        parse_time(text)


def test_parse_time_keeps_the_edges_inside() -> None:
    assert parse_time("1970-01-01T00:00:00Z") == 0.0
    assert parse_time("8999-12-31T23:59:59Z") > parse_time("2026-11-28T10:00:00Z")


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/v1/maintenances", {**WINDOW, "end": FAR_FUTURE}, "end"),
        ("/api/v1/maintenances", {**WINDOW, "start": FAR_PAST}, "start"),
        ("/api/v1/deploys", {**DEPLOY, "at": FAR_PAST}, "at"),
        ("/api/v1/deploys", {**DEPLOY, "at": FAR_FUTURE}, "at"),
    ],
)
async def test_out_of_range_times_are_400_and_store_nothing(
    client: Client, store: SqlStore, path: str, body: dict[str, Any], field: str
) -> None:
    before = stored(store)
    response = await client.post(path, headers=AUTH, json=body)
    assert response.status == 400
    error = (await response.json())["error"]
    assert error.startswith(f"{field}: bad time ") and "outside years 1970..8999" in error
    assert stored(store) == before
    await all_reads_answer(client)


async def test_a_stored_time_no_reader_can_format_breaks_no_render(
    client: Client, store: SqlStore
) -> None:
    """A row written before the edge checked times (or by hand) must not make every public
    read a 500: the bad time shows as null / unknown, the rest of the page still renders."""
    store.add_maintenance(Maintenance(NOW - 60, 1e15, ("carriers/dhl",), "Forever", "m-far"))
    incident = open_incident()
    incident.updates.append(
        IncidentUpdate(1e14, IncidentStatus.IDENTIFIED, incident.component_status, "Found it.")
    )
    commit(store, incident)
    await all_reads_answer(client)
    summary = await (await client.get("/api/v2/summary.json")).json()
    [window] = summary["scheduled_maintenances"]
    assert (window["id"], window["scheduled_until"]) == ("m-far", None)
    html = await (await client.get("/")).text()
    assert "Forever" in html and "unknown time" in html


async def test_a_deploy_in_range_is_still_accepted(client: Client, store: SqlStore) -> None:
    body = {**DEPLOY, "id": "d-1", "at": "2026-11-28T09:00:00+01:00"}
    response = await client.post("/api/v1/deploys", headers=AUTH, json=body)
    assert response.status == 201
    assert store.recent_deploys(0.0) == [
        Deploy(NOW - 3600 * 2, "d-1", "label-api", "1", ("carriers/dhl",))
    ]
