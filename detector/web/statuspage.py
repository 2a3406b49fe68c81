"""Statuspage v2-compatible JSON, built by pure functions from store records.

Field names and enum values follow Atlassian Statuspage's public API v2, so existing status
aggregators read detector's page unchanged. Where detector's model has no direct equivalent
(component ids `group.slug`, groups as group components, update ids, impact, old/new status,
maintenance stages) the choice is documented in docs/api.md, "Compatibility notes".
Only public text leaves here: public updates' bodies, never evidence.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from detector.model import ComponentStatus, Incident, IncidentStatus, IncidentUpdate, Maintenance
from detector.store.base import ComponentRecord
from detector.timeutil import format_time, in_range

Json = dict[str, Any]

DEFAULT_GROUP_NAMES: Mapping[str, str] = {
    "sendcloud": "Sendcloud platform",
    "carriers": "Carriers",
    "integrations": "Integrations",
}

IMPACT_BY_STATUS: Mapping[ComponentStatus, str] = {
    ComponentStatus.OPERATIONAL: "none",
    ComponentStatus.UNDER_MAINTENANCE: "none",
    ComponentStatus.DEGRADED_PERFORMANCE: "minor",
    ComponentStatus.PARTIAL_OUTAGE: "major",
    ComponentStatus.MAJOR_OUTAGE: "critical",
}

# detector writes no postmortems; Statuspage clients expect the fields (null)
NO_POSTMORTEM: Mapping[str, None] = {
    "postmortem_body": None,
    "postmortem_body_last_updated_at": None,
}

INDICATOR_DESCRIPTIONS: Mapping[str, str] = {
    "none": "All Systems Operational",
    "minor": "Minor Service Outage",
    "major": "Partial System Outage",
    "critical": "Major Service Outage",
    "maintenance": "Service Under Maintenance",
}


@dataclass(frozen=True, slots=True)
class PageInfo:
    id: str = "detector"
    name: str = "Status"
    url: str = ""
    time_zone: str = "Etc/UTC"
    group_names: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_GROUP_NAMES))


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What one response needs, read from the store at `now`."""

    page: PageInfo
    now: float
    components: Sequence[ComponentRecord] = ()
    incidents: Sequence[Incident] = ()  # newest first
    maintenances: Sequence[Maintenance] = ()  # soonest first


def public_id(component_id: str) -> str:
    """`carriers/dhl` -> `carriers.dhl`; anything not URL-safe is percent-encoded."""
    return quote(component_id.replace("/", "."), safe="-._~")


def group_of(component_id: str) -> str:
    return component_id.split("/", 1)[0]


def group_name(page: PageInfo, group: str) -> str:
    return page.group_names.get(group) or group.replace("-", " ").replace("_", " ").capitalize()


def worst(statuses: Sequence[ComponentStatus]) -> ComponentStatus:
    return max(statuses, key=lambda status: status.severity, default=ComponentStatus.OPERATIONAL)


def json_time(epoch: float | None) -> str | None:
    """RFC 3339, or null for an absent time or a stored one no reader could parse: a bad
    row must never turn every response into a 500."""
    return None if epoch is None or not in_range(epoch) else format_time(epoch)


# ---------------------------------------------------------------------------- components


def _component_fields(
    cid: str, name: str, status: ComponentStatus, updated: float, position: int, page: PageInfo
) -> Json:
    return {
        "id": public_id(cid),
        "name": name,
        "status": status.value,
        "created_at": json_time(updated),
        "updated_at": json_time(updated),
        "position": position,
        "description": None,
        "showcase": False,
        "start_date": None,
        "group_id": None,
        "page_id": page.id,
        "group": False,
        "only_show_if_degraded": False,
    }


def _component(record: ComponentRecord, page: PageInfo) -> Json:
    out = _component_fields(
        record.id, record.name, record.status, record.updated_at, record.position, page
    )
    out["description"] = record.description or None
    out["group_id"] = public_id(record.group or group_of(record.id))
    return out


def group_records(records: Sequence[ComponentRecord]) -> dict[str, list[ComponentRecord]]:
    """group -> its components by position; groups in order of their first component."""
    groups: dict[str, list[ComponentRecord]] = {}
    for record in sorted(records, key=lambda r: (r.position, r.id)):
        groups.setdefault(record.group or group_of(record.id), []).append(record)
    return groups


def _group_component(group: str, members: Sequence[ComponentRecord], page: PageInfo) -> Json:
    status = worst([member.status for member in members])
    updated = max(member.updated_at for member in members)
    position = min(member.position for member in members)
    out = _component_fields(group, group_name(page, group), status, updated, position, page)
    out["group"] = True
    out["components"] = [public_id(member.id) for member in members]
    return out


def components_list(snapshot: Snapshot) -> list[Json]:
    """Each group component followed by its members, in position order."""
    out: list[Json] = []
    for group, members in group_records(snapshot.components).items():
        out.append(_group_component(group, members, snapshot.page))
        out.extend(_component(member, snapshot.page) for member in members)
    return out


# ---------------------------------------------------------------------------- incidents


def _affected(component: Json, old: ComponentStatus, new: ComponentStatus) -> Json:
    return {"code": component["id"], "name": component["name"], "old_status": old.value,
            "new_status": new.value}  # fmt: skip


def _update_json(update_id: str, status: str, body: str, incident_id: str, at: float | None,
                 affected: list[Json]) -> Json:  # fmt: skip
    stamp = json_time(at)
    return {"id": update_id, "status": status, "body": body, "incident_id": incident_id,
            "created_at": stamp, "updated_at": stamp, "display_at": stamp,
            "affected_components": affected, "deliver_notifications": True, "custom_tweet": None,
            "tweet_id": None}  # fmt: skip


def public_updates(incident: Incident) -> list[tuple[int, IncidentUpdate]]:
    """(number, update), oldest first, public ones only. The number counts every update, so
    ids stay stable when on-call-only ones sit between."""
    return [(n, u) for n, u in enumerate(incident.updates, start=1) if u.public]


def component_status_at(
    snapshot: Snapshot, component: str, at: float, own: Incident | None = None, own_count: int = 0
) -> ComponentStatus:
    """The component's status just before `at` as the snapshot's incidents tell it: the worst
    of each other incident's latest update before `at`, and of `own`'s first `own_count`
    updates (its timeline, whatever their times). Operational when nothing says otherwise."""
    statuses = []
    for other in snapshot.incidents:
        if other.component != component or (own is not None and other.id == own.id):
            continue
        earlier = [u for u in other.updates if u.at < at]
        if earlier:
            statuses.append(max(earlier, key=lambda u: u.at).component_status)
    if own is not None and own_count:
        statuses.append(own.updates[own_count - 1].component_status)
    return worst(statuses)


def _incident_updates(incident: Incident, component: Json, snapshot: Snapshot) -> list[Json]:
    """Newest first, like Statuspage. Body only: evidence never leaves for the public. The
    component's old and new status count every update and every other incident on it."""
    out, cid = [], incident.component
    for n, update in reversed(public_updates(incident)):
        old = component_status_at(snapshot, cid, update.at, incident, n - 1)
        new = component_status_at(snapshot, cid, update.at, incident, n)
        affected = [_affected(component, old, new)]
        out.append(_update_json(f"{incident.id}-{n}", update.status.value, update.body,
                                incident.id, update.at, affected))  # fmt: skip
    return out


def _component_for(component_id: str, snapshot: Snapshot) -> Json:
    for record in snapshot.components:
        if record.id == component_id:
            return _component(record, snapshot.page)
    group, operational = group_of(component_id), ComponentStatus.OPERATIONAL
    stand_in = ComponentRecord(component_id, component_id, group, "", operational, 0, snapshot.now)
    return _component(stand_in, snapshot.page)


def _monitoring_at(incident: Incident) -> float | None:
    if incident.status not in (IncidentStatus.MONITORING, IncidentStatus.RESOLVED):
        return None
    times = [u.at for u in incident.updates if u.status is IncidentStatus.MONITORING]
    return max(times, default=None)


def shortlink(page: PageInfo, anchor: str) -> str:
    return f"{page.url.rstrip('/')}/#{anchor}"


def incident_updated_at(incident: Incident) -> float:
    """The last public change: its newest public update, or its resolution."""
    times = [update.at for _, update in public_updates(incident)]
    return max([incident.opened_at, *times, incident.resolved_at or incident.opened_at])


def incident_json(incident: Incident, snapshot: Snapshot) -> Json:
    component = _component_for(incident.component, snapshot)
    started = incident.opened_at if incident.started_at is None else incident.started_at
    return {
        "id": incident.id,
        "name": incident.title,
        "status": incident.status.value,
        "created_at": json_time(incident.opened_at),
        "updated_at": json_time(incident_updated_at(incident)),
        "monitoring_at": json_time(_monitoring_at(incident)),
        "resolved_at": json_time(incident.resolved_at),
        "impact": IMPACT_BY_STATUS[incident.impact],
        "shortlink": shortlink(snapshot.page, f"incident-{incident.id}"),
        "started_at": json_time(started),  # when the failure began, not when the incident opened
        "page_id": snapshot.page.id,
        "incident_updates": _incident_updates(incident, component, snapshot),
        "components": [component],
        **NO_POSTMORTEM,
    }


def unresolved(incidents: Sequence[Incident]) -> list[Incident]:
    return [i for i in incidents if i.status is not IncidentStatus.RESOLVED]


# ---------------------------------------------------------------------------- maintenance


def maintenance_status(maintenance: Maintenance, snapshot: Snapshot) -> str:
    """`verifying` once the window has ended while a component it covered is not back to
    operational by its incidents; `completed` when all are."""
    now = snapshot.now
    if now < maintenance.start:
        return "scheduled"
    if now < maintenance.end:
        return "in_progress"
    ok = ComponentStatus.OPERATIONAL
    latest = float("inf")  # every update so far, the one at `now` too
    back = all(component_status_at(snapshot, c, latest) is ok for c in maintenance.components)
    return "completed" if back else "verifying"


def _maintenance_updates(maintenance: Maintenance, snapshot: Snapshot) -> list[Json]:
    """One update per stage reached (scheduled, in_progress, completed), newest first; each
    affected component goes from the status it had (its incidents') to the stage's."""
    blue = ComponentStatus.UNDER_MAINTENANCE
    ids = maintenance.components
    created = maintenance.created_at
    at_creation = [component_status_at(snapshot, c, created or maintenance.start) for c in ids]
    stages = [("scheduled", created, at_creation, at_creation)]
    if snapshot.now >= maintenance.start:
        before = [component_status_at(snapshot, c, maintenance.start) for c in ids]
        stages.append(("in_progress", maintenance.start, before, [blue] * len(ids)))
    if snapshot.now >= maintenance.end:  # verifying or completed
        after = [component_status_at(snapshot, c, maintenance.end) for c in ids]
        stage = maintenance_status(maintenance, snapshot)
        stages.append((stage, maintenance.end, [blue] * len(ids), after))
    components = [_component_for(c, snapshot) for c in ids]
    out = []
    for number, (stage, at, old, new) in reversed(list(enumerate(stages, start=1))):
        affected = [_affected(*change) for change in zip(components, old, new, strict=True)]
        out.append(_update_json(f"{maintenance.id}-{number}", stage, maintenance.title,
                                maintenance.id, at, affected))  # fmt: skip
    return out


def maintenance_json(maintenance: Maintenance, snapshot: Snapshot) -> Json:
    """`created_at` is when it was recorded (null when the store does not know), never its
    start; `started_at` stays null until it starts; `updated_at` is its latest stage."""
    status = maintenance_status(maintenance, snapshot)
    components = [_component_for(c, snapshot) for c in maintenance.components]
    updated = maintenance.created_at
    if status != "scheduled":
        updated = maintenance.start if status == "in_progress" else maintenance.end
    return {
        "id": maintenance.id,
        "name": maintenance.title,
        "status": status,
        "created_at": json_time(maintenance.created_at),
        "updated_at": json_time(updated),
        "monitoring_at": None,
        "resolved_at": json_time(maintenance.end) if status == "completed" else None,
        "impact": "maintenance",
        "shortlink": shortlink(snapshot.page, f"maintenance-{maintenance.id}"),
        "started_at": json_time(maintenance.start) if status != "scheduled" else None,
        "page_id": snapshot.page.id,
        "incident_updates": _maintenance_updates(maintenance, snapshot),
        "components": components,
        "scheduled_for": json_time(maintenance.start),
        "scheduled_until": json_time(maintenance.end),
        **NO_POSTMORTEM,
    }


# ---------------------------------------------------------------------------- page status


def indicator(snapshot: Snapshot) -> str:
    statuses = [record.status for record in snapshot.components]
    statuses += [i.component_status for i in unresolved(snapshot.incidents)]
    current = worst(statuses)
    if current is ComponentStatus.UNDER_MAINTENANCE:
        return "maintenance"
    return IMPACT_BY_STATUS[current]
