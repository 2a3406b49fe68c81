"""The Statuspage v2 endpoint bodies (/api/v2/*.json), composed from statuspage.py's shapes.

Each function takes one Snapshot and returns the whole response; the record shaping (and
what is public) lives in statuspage.py.
"""

from __future__ import annotations

from collections.abc import Sequence

from detector.model import Incident
from detector.web.statuspage import (
    INDICATOR_DESCRIPTIONS,
    Json,
    Snapshot,
    components_list,
    incident_json,
    incident_updated_at,
    indicator,
    json_time,
    maintenance_json,
    maintenance_status,
    unresolved,
)


def status_json(snapshot: Snapshot) -> Json:
    value = indicator(snapshot)
    return {"indicator": value, "description": INDICATOR_DESCRIPTIONS[value]}


def page_json(snapshot: Snapshot) -> Json:
    page = snapshot.page
    times = [record.updated_at for record in snapshot.components]
    times += [incident_updated_at(i) for i in snapshot.incidents]
    return {
        "id": page.id,
        "name": page.name,
        "url": page.url,
        "time_zone": page.time_zone,
        "updated_at": json_time(max(times, default=snapshot.now)),
    }


# ---------------------------------------------------------------------------- endpoints


def summary(snapshot: Snapshot) -> Json:
    """/api/v2/summary.json: incidents unresolved, maintenances active or upcoming."""
    return {
        "page": page_json(snapshot),
        "components": components_list(snapshot),
        "incidents": [incident_json(i, snapshot) for i in unresolved(snapshot.incidents)],
        "scheduled_maintenances": [
            maintenance_json(m, snapshot) for m in snapshot.maintenances if m.end > snapshot.now
        ],
        "status": status_json(snapshot),
    }


def status(snapshot: Snapshot) -> Json:
    """/api/v2/status.json"""
    return {"page": page_json(snapshot), "status": status_json(snapshot)}


def components(snapshot: Snapshot) -> Json:
    """/api/v2/components.json"""
    return {"page": page_json(snapshot), "components": components_list(snapshot)}


def _incidents(snapshot: Snapshot, chosen: Sequence[Incident]) -> Json:
    return {"page": page_json(snapshot), "incidents": [incident_json(i, snapshot) for i in chosen]}


def incidents(snapshot: Snapshot, *, limit: int = 50) -> Json:
    """/api/v2/incidents.json: the newest `limit`, resolved or not."""
    return _incidents(snapshot, list(snapshot.incidents)[:limit])


def unresolved_incidents(snapshot: Snapshot) -> Json:
    """/api/v2/incidents/unresolved.json"""
    return _incidents(snapshot, unresolved(snapshot.incidents))


def _maintenances(snapshot: Snapshot, *states: str) -> Json:
    chosen = [m for m in snapshot.maintenances if maintenance_status(m, snapshot) in states]
    listed = [maintenance_json(m, snapshot) for m in chosen]
    return {"page": page_json(snapshot), "scheduled_maintenances": listed}


def scheduled_maintenances(snapshot: Snapshot) -> Json:
    """/api/v2/scheduled-maintenances.json: every maintenance in the snapshot."""
    return _maintenances(snapshot, "scheduled", "in_progress", "verifying", "completed")


def upcoming_maintenances(snapshot: Snapshot) -> Json:
    """/api/v2/scheduled-maintenances/upcoming.json"""
    return _maintenances(snapshot, "scheduled")


def active_maintenances(snapshot: Snapshot) -> Json:
    """/api/v2/scheduled-maintenances/active.json: in progress or verifying"""
    return _maintenances(snapshot, "in_progress", "verifying")
