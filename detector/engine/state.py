"""Engine state as a plain JSON-able value, so a restart (or `kill -9`) loses no clock.

Windows are not saved: they are rebuilt from the stored probe results, which keeps the
state small enough to write on every change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from detector.engine.core import Engine
from detector.engine.series import Series
from detector.model import (
    ComponentStatus,
    Deploy,
    Incident,
    IncidentStatus,
    Maintenance,
    ProbeResult,
    Rule,
    incident_fields,
)

STATE_VERSION = 1


def _load_incident(data: Mapping[str, Any]) -> Incident:
    return Incident(
        id=data["id"],
        rule=data["rule"],
        component=data["component"],
        title=data["title"],
        cause=data["cause"],
        deploy=data["deploy"],
        impact=ComponentStatus(data["impact"]),
        status=IncidentStatus(data["status"]),
        component_status=ComponentStatus(data["component_status"]),
        opened_at=data["opened_at"],
        markets=tuple(data["markets"]),
    )


def dump_state(engine: Engine) -> dict[str, Any]:
    series = [
        {
            "rule": s.rule,
            "component": s.component,
            "failing": s.failing,
            "status": str(s.status) if s.status else None,
            "failing_since": s.failing_since,
            "deploy_cause": s.deploy_cause,
            "inhibited": s.inhibited,
            "stable_since": s.stable_since,
            "incident": incident_fields(s.incident) if s.incident else None,
        }
        for s in (*engine.series.values(), *engine.orphaned.values())
        if s.failing or s.failing_since is not None or s.incident is not None
    ]
    calendar = engine.calendar
    return {
        "version": STATE_VERSION,
        "series": series,
        "deploys": [
            {
                "at": d.at,
                "id": d.id,
                "service": d.service,
                "version": d.version,
                "components": list(d.components),
                "bad": d.bad,
                "flagged_at": calendar.flagged_at.get(d.id),
            }
            for d in calendar.deploys.values()
        ],
        "maintenances": [
            {
                "id": m.id,
                "start": m.start,
                "end": m.end,
                "components": list(m.components),
                "title": m.title,
            }
            for m in calendar.maintenances.values()
        ],
    }


def load_state(
    rules: Sequence[Rule],
    state: Mapping[str, Any] | None,
    recent_results: Sequence[ProbeResult] = (),
    component_names: Mapping[str, str] | None = None,
    restored_at: float | None = None,
) -> Engine:
    """A new engine holding `state`; series of rules that no longer exist are dropped,
    their open incidents kept as orphans (as on a reload). With
    `restored_at`, restored series hold their verdict until a result at least that new."""
    engine = Engine(rules, component_names)
    if state and state.get("version") == STATE_VERSION:
        for item in state["deploys"]:
            engine.calendar.add_deploy(
                Deploy(
                    item["at"],
                    item["id"],
                    item["service"],
                    item["version"],
                    tuple(item["components"]),
                    item["bad"],
                )
            )
            if item.get("flagged_at") is not None:
                engine.calendar.flag_bad(item["id"], item["flagged_at"])
        for item in state["maintenances"]:
            engine.calendar.add_maintenance(
                Maintenance(
                    item["start"], item["end"], tuple(item["components"]), item["title"], item["id"]
                )
            )
        for item in state["series"]:
            series = Series(item["rule"], item["component"])
            series.failing = item["failing"]
            series.status = ComponentStatus(item["status"]) if item["status"] else None
            series.failing_since = item["failing_since"]
            series.deploy_cause = item["deploy_cause"]
            series.inhibited = item["inhibited"]
            series.stable_since = item["stable_since"]
            if item["incident"]:
                series.incident = _load_incident(item["incident"])
            series.fresh_after = restored_at
            engine.series[series.key] = series
    for result in recent_results:  # older than restored_at: rebuilds windows, proves nothing
        engine.observe(result)
    engine.set_rules(rules)  # drops series of vanished rules, orphans their incidents
    engine.restore_counts()
    return engine
