"""Incidents on-call opens by hand, for what the probes do not cover.

A manual incident is a watch of the rule "manual", which no rule file defines: the engine
keeps it among its orphans (watches without a rule), so it sets its component's status, is
saved and restored with the engine state, and is updated or resolved through
`Engine.manual_update` like any other; no evaluation ever resolves it.
"""

from __future__ import annotations

from detector.engine.core import Engine
from detector.engine.lifecycle import incident_id
from detector.engine.series import Watch
from detector.model import (
    ComponentStatus,
    Decision,
    Incident,
    IncidentOpened,
    IncidentStatus,
    IncidentUpdate,
)

MANUAL_RULE = "manual"


def open_manual(
    engine: Engine,
    component: str,
    status: IncidentStatus,
    component_status: ComponentStatus,
    title: str,
    body: str,
    now: float,
) -> list[Decision]:
    """ValueError when the component has a manual incident open already (one per
    (rule, component), as for every rule) or a rule file defines a rule named "manual"."""
    key = (MANUAL_RULE, component)
    if MANUAL_RULE in engine.rules:
        raise ValueError(f"a rule file defines a rule named {MANUAL_RULE!r}; rename it")
    watch = engine.orphaned.get(key)
    if watch is not None and watch.incident is not None:
        raise ValueError(f"{component} has a manual incident open already: {watch.incident.id}")
    incident = Incident(
        id=incident_id(MANUAL_RULE, component, now),
        rule=MANUAL_RULE,
        component=component,
        title=title,
        cause="manual",
        deploy=None,
        impact=component_status,
        status=status,
        component_status=component_status,
        opened_at=now,
        started_at=now,
    )
    incident.updates.append(
        IncidentUpdate(now, status, component_status, body, evidence="opened by hand")
    )
    watch = Watch(MANUAL_RULE, component, incident=incident, reopen_status=status)
    engine.orphaned[key] = watch
    engine._open_by_rule[MANUAL_RULE] += 1
    engine.changed = True
    return [IncidentOpened(incident)]
