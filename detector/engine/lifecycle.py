"""The incident lifecycle of one series: open, update, monitor, resolve, end the episode.

A mixin of `Engine`, kept apart so each file holds one stage: core.py decides *when* a series
is stepped, this file what a step *does* to its incident.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Mapping

from detector.engine.calendar import Calendar
from detector.engine.series import Series, SeriesKey
from detector.engine.texts import Texts
from detector.model import (
    ComponentStatus,
    Decision,
    Deploy,
    Episode,
    EpisodeEnded,
    EpisodeOutcome,
    Incident,
    IncidentOpened,
    IncidentResolved,
    IncidentStatus,
    IncidentUpdate,
    IncidentUpdated,
    Rule,
)

_OPEN = (IncidentStatus.INVESTIGATING, IncidentStatus.IDENTIFIED)


class Lifecycle:
    """State the lifecycle reads; `Engine` provides it."""

    texts: Texts
    calendar: Calendar
    rules: Mapping[str, Rule]
    series: dict[SeriesKey, Series]
    orphaned: dict[SeriesKey, Series]
    changed: bool
    _open_by_rule: Counter[str]

    def _schedule(self, series: Series, rule: Rule, now: float) -> None:
        raise NotImplementedError  # Engine's timers

    def explain(self, series: Series) -> str:
        """Why the last judgement came out as it did, with the values seen."""
        rule = self.rules[series.rule]
        if series.short_count is not None:
            return self.texts.no_data(rule, series.short_count)
        if series.values is None:
            return "no evaluation since restart"
        if series.matched is not None:
            return series.matched.explain(series.values)
        checked = "; ".join(impact.when.explain(series.values) for impact in rule.impact)
        return f"no impact condition holds (false: {checked})"

    def _on_failing(self, series: Series, rule: Rule, now: float, out: list[Decision]) -> None:
        if series.failing_since is None:
            series.failing_since = now
            self.changed = True
            deploy = self.calendar.deploy_before(series.component, now, rule.deploy_window)
            series.deploy_cause = deploy.id if deploy else None
        incident = series.incident
        status = series.status or rule.impact[0].status
        if incident is not None:
            if incident.status is IncidentStatus.MONITORING:
                incident.status = IncidentStatus.INVESTIGATING
                series.stable_since = None
                body = self.texts.relapse(self.explain(series))
                self._update(incident, now, status, body, out)
            elif status is not incident.component_status:
                body = self.texts.impact_change(status, self.explain(series))
                self._update(incident, now, status, body, out)
            return
        deploy = self._deploy_cause(series)
        if deploy is None and now - series.failing_since < rule.open_after:
            return
        if any(self._open_by_rule[name] for name in rule.inhibited_by):
            series.inhibited = True
            return
        self._open(series, rule, now, status, deploy, out)

    def _deploy_cause(self, series: Series) -> Deploy | None:
        if series.deploy_cause is not None:
            deploy = self.calendar.deploys.get(series.deploy_cause)
            if deploy is not None:
                return deploy
        assert series.failing_since is not None
        return self.calendar.flagged_during(series.component, series.failing_since)

    def _on_stable(self, series: Series, rule: Rule, now: float, out: list[Decision]) -> bool:
        incident = series.incident
        if incident is None:
            return False
        if incident.status in _OPEN:
            incident.status = IncidentStatus.MONITORING
            series.stable_since = now
            body = self.texts.recovering(self.explain(series), rule.resolve_after)
            self._update(incident, now, incident.component_status, body, out)
        elif series.stable_since is not None and now - series.stable_since >= rule.resolve_after:
            self._resolve(series, now, self.texts.resolved(now - series.stable_since), out)
            return True
        return False

    # ------------------------------------------------------------------ incident lifecycle
    def _open(
        self,
        series: Series,
        rule: Rule,
        now: float,
        status: ComponentStatus,
        deploy: Deploy | None,
        out: list[Decision],
    ) -> None:
        assert series.failing_since is not None
        markets = series.window.failed_markets()
        fields = self.texts.fields(series, rule, now, markets, deploy, self.explain(series))
        incident = Incident(
            id=incident_id(rule.name, series.component, now),
            rule=rule.name,
            component=series.component,
            title=rule.title.format(**fields),
            cause="deploy" if deploy else "sustained",
            deploy=deploy.id if deploy else None,
            impact=status,
            status=IncidentStatus.INVESTIGATING,
            component_status=status,
            opened_at=now,
            markets=markets,
        )
        body = rule.message.format(**fields)
        if deploy is not None:
            body += self.texts.deploy_note(deploy, series.failing_since)
        incident.updates.append(IncidentUpdate(now, incident.status, status, body))
        series.incident = incident
        series.inhibited = False
        self._open_by_rule[rule.name] += 1
        out.append(IncidentOpened(incident))

    def _update(
        self,
        incident: Incident,
        now: float,
        status: ComponentStatus,
        body: str,
        out: list[Decision],
    ) -> None:
        incident.component_status = status
        if status.severity > incident.impact.severity:
            incident.impact = status
        update = IncidentUpdate(now, incident.status, status, body)
        incident.updates.append(update)
        out.append(IncidentUpdated(incident, update))

    def _resolve(self, series: Series, now: float, body: str, out: list[Decision]) -> None:
        incident = series.incident
        assert incident is not None
        incident.status = IncidentStatus.RESOLVED
        incident.component_status = ComponentStatus.OPERATIONAL
        incident.resolved_at = now
        update = IncidentUpdate(now, IncidentStatus.RESOLVED, ComponentStatus.OPERATIONAL, body)
        incident.updates.append(update)
        series.incident = None
        series.stable_since = None
        self._open_by_rule[incident.rule] -= 1
        out.append(IncidentResolved(incident, update))

    def _end_episode(
        self, series: Series, now: float, outcome: EpisodeOutcome | None, out: list[Decision]
    ) -> None:
        if series.failing_since is None:
            return
        if outcome is None:
            outcome = (
                "incident"
                if series.incident is not None
                else "inhibited"
                if series.inhibited
                else "too_short"
            )
        incident_id_ = series.incident.id if series.incident is not None else None
        episode = Episode(
            series.rule, series.component, series.failing_since, now, outcome, incident_id_
        )
        out.append(EpisodeEnded(episode))
        series.failing_since = None
        series.deploy_cause = None
        series.inhibited = False
        self.changed = True

    # ------------------------------------------------------------------ manual updates
    def manual_update(
        self, incident_id_: str, status: IncidentStatus, body: str, now: float
    ) -> list[Decision]:
        """On-call moves an open incident to identified / monitoring / resolved."""
        everything = (*self.series.values(), *self.orphaned.values())
        series = next((s for s in everything if s.incident and s.incident.id == incident_id_), None)
        if series is None or series.incident is None:
            raise KeyError(incident_id_)
        if series.key in self.orphaned:  # its rule is gone: on-call's word is all there is
            return self._orphan_update(series, status, body, now)
        out: list[Decision] = []
        incident = series.incident
        if status is IncidentStatus.RESOLVED:
            self._end_episode(series, now, "incident", out)
            self._resolve(series, now, body, out)
            if series.failing:  # still failing: a fresh episode, a fresh open_after clock
                series.failing_since = now
        else:
            incident.status = status
            if status is IncidentStatus.MONITORING:
                series.stable_since = now
            self._update(incident, now, incident.component_status, body, out)
        self._schedule(series, self.rules[series.rule], now)
        self.changed = True
        return out

    def _orphan_update(
        self, series: Series, status: IncidentStatus, body: str, now: float
    ) -> list[Decision]:
        out: list[Decision] = []
        assert series.incident is not None
        if status is IncidentStatus.RESOLVED:
            self._end_episode(series, now, "incident", out)
            self._resolve(series, now, body, out)
            del self.orphaned[series.key]
        else:
            series.incident.status = status
            self._update(series.incident, now, series.incident.component_status, body, out)
        self.changed = True
        return out


def incident_id(rule: str, component: str, opened_at: float) -> str:
    """Deterministic, so replay is repeatable and two writers of one incident collide."""
    digest = hashlib.sha1(f"{rule}|{component}|{opened_at:.3f}".encode(), usedforsecurity=False)
    return digest.hexdigest()[:12]
