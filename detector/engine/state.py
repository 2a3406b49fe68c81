"""Engine state as a plain JSON-able value, so a restart (or `kill -9`) loses no clock.

Windows are not saved: they are rebuilt from the stored probe results, which keeps the
state small enough to write on every change. Version 1 (one series per rule and component,
before `split_by`) is still read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from detector.engine.core import Engine
from detector.engine.series import Series, Watch
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

STATE_VERSION = 2


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
        started_at=data.get("started_at"),
    )


def _dump_series(series: Series) -> dict[str, Any]:
    return {
        "rule": series.rule,
        "component": series.component,
        "split": list(series.split),
        "failing": series.failing,
        "status": str(series.status) if series.status else None,
        "failing_since": series.failing_since,
        "deploy_cause": series.deploy_cause,
        "inhibited": series.inhibited,
    }


def _dump_watch(watch: Watch) -> dict[str, Any]:
    incident = watch.incident
    assert incident is not None
    return {
        "rule": watch.rule,
        "component": watch.component,
        "stable_since": watch.stable_since,
        "reopen_status": str(watch.reopen_status),
        "incident": incident_fields(incident),
    }


def dump_state(engine: Engine) -> dict[str, Any]:
    watches = (*engine.watches.values(), *engine.orphaned.values())
    calendar = engine.calendar
    return {
        "version": STATE_VERSION,
        # Series that are failing or in an episode; watches with an open incident.
        "series": [
            _dump_series(s)
            for w in watches
            for s in w.series.values()
            if s.failing or s.failing_since is not None
        ],
        "watches": [_dump_watch(w) for w in watches if w.incident is not None],
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


def _from_version_1(state: Mapping[str, Any]) -> tuple[list[Any], list[Any]]:
    """v1 held one series per (rule, component), with the incident on it."""
    series = [item | {"split": []} for item in state["series"]]
    watches = [item for item in state["series"] if item["incident"]]
    return series, watches


def _watch(engine: Engine, rule: str, component: str) -> Watch:
    watch = engine.watches.get((rule, component))
    if watch is None:
        known = engine.rules.get(rule)
        split_by = known.split_by if known is not None else ()
        watch = engine.watches[(rule, component)] = Watch(rule, component, split_by=split_by)
    return watch


def _restore(
    engine: Engine, series: list[Any], watches: list[Any], restored_at: float | None
) -> None:
    for item in watches:
        watch = _watch(engine, item["rule"], item["component"])
        watch.stable_since = item["stable_since"]
        watch.reopen_status = IncidentStatus(item.get("reopen_status", "investigating"))
        watch.incident = _load_incident(item["incident"])
    for data in series:
        watch = _watch(engine, data["rule"], data["component"])
        rule = engine.rules.get(watch.rule)
        split_by = rule.split_by if rule is not None else ()
        split = tuple(data["split"])
        if len(split) != len(split_by):  # saved before split_by changed: judged anew
            continue
        market = None
        if "market" in split_by and len(split) == len(split_by):
            market = split[split_by.index("market")] or None
        restored = Series(watch, split, market)
        restored.failing = data["failing"]
        restored.status = ComponentStatus(data["status"]) if data["status"] else None
        restored.failing_since = data["failing_since"]
        restored.deploy_cause = data["deploy_cause"]
        restored.inhibited = data["inhibited"]
        restored.fresh_after = restored_at
        if restored_at is not None:
            watch.blockers.add(restored)
        watch.series[split] = restored
        engine.series[restored.key] = restored


def _restore_calendar(engine: Engine, state: Mapping[str, Any]) -> None:
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


def load_state(
    rules: Sequence[Rule],
    state: Mapping[str, Any] | None,
    recent_results: Sequence[ProbeResult] = (),
    component_names: Mapping[str, str] | None = None,
    restored_at: float | None = None,
) -> Engine:
    """A new engine holding `state`; watches of rules that no longer exist are dropped,
    their open incidents kept as orphans (as on a reload). With `restored_at`, restored
    series hold their verdict until a result at least that new."""
    engine = Engine(rules, component_names)
    version = state.get("version") if state else None
    if state and version in (1, STATE_VERSION):
        _restore_calendar(engine, state)
        if version == STATE_VERSION:
            _restore(engine, state["series"], state["watches"], restored_at)
        else:
            _restore(engine, *_from_version_1(state), restored_at)
    for result in recent_results:  # older than restored_at: rebuilds windows, proves nothing
        engine.observe(result)
    engine.set_rules(rules)  # drops watches of vanished rules, orphans their incidents
    engine.restore_counts()
    return engine
