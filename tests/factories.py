"""Model objects the tests build again and again: one probe result, one incident, one
component, all at the same moment (T0) unless a test says otherwise."""

from __future__ import annotations

from typing import Any

from detector.model import ComponentStatus, Incident, IncidentStatus, IncidentUpdate, ProbeResult
from detector.store.base import ComponentRecord

T0 = 1_795_860_000.0  # 2026-11-28T10:00:00Z
MIN = 60.0
MAJOR = ComponentStatus.MAJOR_OUTAGE
OPERATIONAL = ComponentStatus.OPERATIONAL
INVESTIGATING = IncidentStatus.INVESTIGATING
MONITORING = IncidentStatus.MONITORING
RESOLVED = IncidentStatus.RESOLVED


def make_result(at: float = T0, ok: bool = True, **changes: Any) -> ProbeResult:
    """A DHL label-creation result in DE; a failing one says `HTTP 503`."""
    fields: dict[str, Any] = {
        "at": at,
        "probe": "dhl-label-de",
        "kind": "label_creation",
        "component": "carriers/dhl",
        "ok": ok,
        "latency_s": 0.41,
        "error": None if ok else "HTTP 503",
        "labels": {"market": "DE"},
        "phases": {"connect": 0.01, "total": 0.41},
    }
    fields.update(changes)
    return ProbeResult(**fields)


def make_incident(
    incident_id: str = "inc-1",
    at: float = T0,
    *,
    status: IncidentStatus = INVESTIGATING,
    impact: ComponentStatus = MAJOR,
    body: str = "Labels fail.",
    **changes: Any,
) -> Incident:
    """A DHL label-creation incident in DE opened `at` with `body`; a monitoring one was fixed
    10 minutes later, a resolved one resolved 20 minutes later (unless `resolved_at` says)."""
    updates = [IncidentUpdate(at, INVESTIGATING, impact, body)]
    resolved_at = changes.pop("resolved_at", None)
    if status in (MONITORING, RESOLVED):
        updates.append(IncidentUpdate(at + 600, MONITORING, OPERATIONAL, "Fix out."))
    if status is RESOLVED:
        resolved_at = resolved_at or at + 1200
        updates.append(IncidentUpdate(resolved_at, RESOLVED, OPERATIONAL, "Resolved."))
    fields: dict[str, Any] = {
        "id": incident_id,
        "rule": "carrier-label-creation",
        "component": "carriers/dhl",
        "title": "DHL: label creation failing (DE)",
        "cause": "sustained",
        "deploy": None,
        "impact": impact,
        "status": status,
        "component_status": OPERATIONAL if status is RESOLVED else impact,
        "opened_at": at,
        "resolved_at": resolved_at,
        "updates": updates,
        "markets": ("DE",),
    }
    fields.update(changes)
    return Incident(**fields)


def make_component(
    component_id: str,
    position: int = 0,
    *,
    name: str = "",
    status: ComponentStatus = OPERATIONAL,
    updated_at: float = T0,
    description: str = "",
) -> ComponentRecord:
    """A component in the group its id names (`carriers/dhl` -> group `carriers`, name `DHL`)."""
    group, _, slug = component_id.partition("/")
    return ComponentRecord(
        component_id, name or slug.upper(), group, description, status, position, updated_at
    )
