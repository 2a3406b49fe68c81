"""What one step does to a watch: judge its due series, run their episode clocks, and move
the one incident they share (DESIGN timing rules 1-8, "Markets and vantage points").

A base class of `Engine`, kept apart so each file holds one stage: core.py decides *when* a
watch is stepped, this file what a step *does*. Views <- Lifecycle <- Engine is one chain,
not mixins: mypyc compiles native classes with single inheritance only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from detector.engine.series import Series, Watch
from detector.engine.texts import Texts
from detector.engine.views import Views
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
    NoData,
    Rule,
    note_time,
    quorum_needed,
)
from detector.timeutil import format_duration

_OPEN = (IncidentStatus.INVESTIGATING, IncidentStatus.IDENTIFIED)
_ONE_OF_ONE, _NONE_OF_ONE = (1, 1), (0, 1)


class Lifecycle(Views):
    """State the lifecycle reads besides the views'; `Engine` provides it."""

    texts: Texts
    changed: bool
    _needs: dict[str, frozenset[str]]
    _solo: dict[str, bool]  # per rule: one instance alone can make a series fail

    def _schedule(
        self, watch: Watch, rule: Rule, now: float, stepped: Iterable[Series] | None = None
    ) -> None:
        raise NotImplementedError  # Engine's timers

    # ------------------------------------------------------------------ one step
    def _step(self, watch: Watch, due: list[Series], now: float, out: list[Decision]) -> bool:
        """Evaluate one watch at `now`; returns True when it resolved an incident."""
        rule = self.rules[watch.rule]
        for series in due:
            if series.fresh_after is None:
                self._judge(series, rule, now)
        # Restored after downtime (the old verdict stands only once a fresh result confirms
        # it), or only suspect results: nothing moves, no update is posted.
        if watch.blockers:
            # Nothing opens or is posted, but a series that judged itself healthy still ends
            # its episode: one non-failing evaluation ends an episode (timing rule 2).
            for series in due:
                if not (series.held or series.failing or series.fresh_after is not None):
                    self._end_episode(series, now, None, out)
            self._schedule(watch, rule, now, due)
            return False
        calendar = self.calendar
        maintenance = (
            watch.incident is None
            and bool(calendar.maintenances)
            and calendar.in_maintenance(watch.component, now)
        )
        for series in due:
            if maintenance:
                self._end_episode(series, now, "maintenance", out)
            elif series.failing:
                if series.failing_since is None:
                    self._start_episode(series, rule, now)
            elif series.failing_since is not None:
                self._end_episode(series, now, None, out)
        resolved = False
        if not maintenance:
            if len(watch.series) == 1 and len(due) == 1:  # unsplit: the stepped one is all
                only = due[0]
                failing = [only] if only.failing and only.failing_since is not None else []
            else:
                failing = [
                    s for s in watch.series.values() if s.failing and s.failing_since is not None
                ]
            if watch.incident is not None:
                resolved = self._follow(watch, rule, failing, now, out)
            elif failing:
                self._maybe_open(watch, rule, failing, now, out)
        # Only stepped series changed; the others' timers stand (a stale one steps harmlessly).
        self._schedule(watch, rule, now, due)
        return resolved

    def _judge(self, series: Series, rule: Rule, now: float) -> None:
        solo = series.solo
        if solo is not None and not series.suspects:  # the hot path: one vantage point
            solo.evict(now - rule.window)
            count = len(solo.entries)
        else:
            count = series.evict(now - rule.window)
        held = count == 0 and bool(series.suspects)
        if held is not series.held:
            series.held = held
            (series.watch.blockers.add if held else series.watch.blockers.discard)(series)
        if held:
            return
        if count < rule.min_results:
            if rule.no_data is NoData.KEEP:
                return  # verdict, status and clocks unchanged
            series.failing = rule.no_data is NoData.FAILING
            series.status = rule.impact[0].status if series.failing else None
            series.values, series.matched, series.short_count = None, None, count
            series.agree = None
            return
        needs = self._needs[rule.name]
        if solo is not None and self._solo[rule.name]:  # no quorum to count
            values = solo.metrics(needs)
            series.short_count, series.values = None, values
            for impact in rule.impact:
                if impact.when.evaluate(values):
                    series.failing, series.status, series.matched = True, impact.status, impact.when
                    series.agree = _ONE_OF_ONE
                    return
            series.failing, series.status, series.matched = False, None, None
            series.agree = _NONE_OF_ONE
            return
        verdicts = []  # per instance with results: (severity, impact index, values)
        for window in series.windows.values():
            if not window.entries:
                continue
            values = window.metrics(needs)
            for index, impact in enumerate(rule.impact):
                if impact.when.evaluate(values):
                    verdicts.append((impact.status.severity, index, values))
                    break
            else:
                verdicts.append((-1, -1, values))
        verdicts.sort(key=lambda v: (-v[0], v[1]))  # worst first
        seen = sum(1 for v in verdicts if v[1] >= 0)
        needed = quorum_needed(rule.quorum, len(verdicts))
        series.short_count, series.agree = None, (seen, len(verdicts))
        if seen >= needed:
            # The status at least `needed` instances agree on: the needed-th worst verdict.
            _, index, values = verdicts[needed - 1]
            impact = rule.impact[index]
            series.failing, series.status, series.matched = True, impact.status, impact.when
        else:
            values = verdicts[-1][2]
            series.failing, series.status, series.matched = False, None, None
        series.values = values

    def _start_episode(self, series: Series, rule: Rule, now: float) -> None:
        if series.failing_since is None:
            series.failing_since = now
            self.changed = True
            deploy = self.calendar.deploy_before(series.component, now, rule.deploy_window)
            series.deploy_cause = deploy.id if deploy else None

    def _deploy_cause(self, series: Series) -> Deploy | None:
        if series.deploy_cause is not None:
            deploy = self.calendar.deploys.get(series.deploy_cause)
            if deploy is not None:
                return deploy
        assert series.failing_since is not None
        return self.calendar.flagged_during(series.component, series.failing_since)

    def _maybe_open(
        self, watch: Watch, rule: Rule, failing: list[Series], now: float, out: list[Decision]
    ) -> None:
        """Open when the first of its series would open one (deploy cause included)."""
        ready: list[tuple[Series, Deploy | None]] = []
        for series in failing if len(failing) == 1 else sorted(failing, key=_split):
            assert series.failing_since is not None
            deploy = self._deploy_cause(series)
            if deploy is not None or now - series.failing_since >= rule.open_after:
                ready.append((series, deploy))
        if not ready:
            return
        if any(self._open_by_rule[name] for name in rule.inhibited_by):
            for series, _ in ready:
                series.inhibited = True
            return
        deploy = next((d for _, d in ready if d is not None), None)
        self._open(watch, rule, failing, now, deploy, out)

    def _follow(
        self, watch: Watch, rule: Rule, failing: list[Series], now: float, out: list[Decision]
    ) -> bool:
        """Move an open incident along with its series; True when it resolved."""
        incident = watch.incident
        assert incident is not None
        if failing:
            relapse = incident.status is IncidentStatus.MONITORING
            if relapse:
                incident.status = watch.reopen_status
                watch.stable_since = None
            joined = set(_markets(failing)) - set(incident.markets)
            if joined:
                incident.markets = tuple(sorted({*incident.markets, *joined}))
                incident.title = self.texts.title(rule, watch.component, incident.markets)
            status = _worst(failing)
            worse = status.severity > incident.component_status.severity
            if relapse or joined or status is not incident.component_status:
                why = self.texts.evidence(rule, failing)
                if joined:
                    why = f"joined: {', '.join(sorted(joined))}; {why}"
                public = relapse or bool(joined) or worse
                self._update(watch, rule, now, status, why, public, out)
            return False
        if incident.status in _OPEN:
            incident.status = IncidentStatus.MONITORING
            watch.stable_since = now
            why = (
                f"checks pass again: {self.texts.evidence(rule, watch.series.values())};"
                f" resolves after {format_duration(rule.resolve_after)} without failure"
            )
            self._update(watch, rule, now, incident.component_status, why, True, out)
        elif watch.stable_since is not None and now - watch.stable_since >= rule.resolve_after:
            self._resolve(watch, rule, now, None, out)
            return True
        return False

    # ------------------------------------------------------------------ incident lifecycle
    def _open(
        self,
        watch: Watch,
        rule: Rule,
        failing: list[Series],
        now: float,
        deploy: Deploy | None,
        out: list[Decision],
    ) -> None:
        status = _worst(failing)
        markets = _markets(failing)
        started = min(s.failing_since for s in failing if s.failing_since is not None)
        state = IncidentStatus.IDENTIFIED if deploy else IncidentStatus.INVESTIGATING
        incident = Incident(
            id=incident_id(rule.name, watch.component, now),
            rule=rule.name,
            component=watch.component,
            title=self.texts.title(rule, watch.component, markets),
            cause="deploy" if deploy else "sustained",
            deploy=deploy.id if deploy else None,
            impact=status,
            status=state,
            component_status=status,
            opened_at=now,
            markets=markets,
            started_at=started,
        )
        body = self.texts.body(rule, state, watch.component, markets)
        evidence = self.texts.evidence(rule, failing)
        if deploy is not None:
            flagged = self.calendar.flagged_at.get(deploy.id)
            evidence += self.texts.deploy_note(deploy, started, flagged)
        incident.updates.append(IncidentUpdate(now, state, status, body, evidence))
        watch.incident = incident
        watch.reopen_status = state
        for series in failing:
            series.inhibited = False
        self._open_by_rule[rule.name] += 1
        out.append(IncidentOpened(incident))

    def _update(
        self,
        watch: Watch,
        rule: Rule | None,
        now: float,
        status: ComponentStatus,
        evidence: str,
        public: bool,
        out: list[Decision],
        body: str | None = None,
    ) -> None:
        incident = watch.incident
        assert incident is not None
        incident.component_status = status
        if status.severity > incident.impact.severity:
            incident.impact = status
        if body is None:
            assert rule is not None
            body = self.texts.body(rule, incident.status, watch.component, incident.markets)
        update = IncidentUpdate(now, incident.status, status, body, evidence, public)
        incident.updates.append(update)
        out.append(IncidentUpdated(incident, update))

    def _resolve(
        self, watch: Watch, rule: Rule | None, now: float, body: str | None, out: list[Decision]
    ) -> None:
        incident = watch.incident
        assert incident is not None
        stable_for = now - watch.stable_since if watch.stable_since is not None else 0.0
        incident.status = IncidentStatus.RESOLVED
        incident.component_status = ComponentStatus.OPERATIONAL
        incident.resolved_at = now
        if body is None:
            assert rule is not None
            body = self.texts.body(rule, incident.status, watch.component, incident.markets)
            evidence = f"checks have passed for {format_duration(stable_for)}"
        else:
            evidence = "resolved by hand"
        update = IncidentUpdate(
            now, IncidentStatus.RESOLVED, ComponentStatus.OPERATIONAL, body, evidence
        )
        incident.updates.append(update)
        watch.incident = None
        watch.stable_since = None
        self._open_by_rule[incident.rule] -= 1
        out.append(IncidentResolved(incident, update))

    def _end_episode(
        self, series: Series, now: float, outcome: EpisodeOutcome | None, out: list[Decision]
    ) -> None:
        if series.failing_since is None:
            return
        incident = series.watch.incident
        if outcome is None:
            outcome = (
                "incident"
                if incident is not None
                else "inhibited"
                if series.inhibited
                else "too_short"
            )
        incident_id_ = incident.id if incident is not None else None
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
        everything = (*self.watches.values(), *self.orphaned.values())
        watch = next((w for w in everything if w.incident and w.incident.id == incident_id_), None)
        if watch is None or watch.incident is None:
            raise KeyError(incident_id_)
        updates = watch.incident.updates
        now = note_time(updates[-1].at if updates else None, now)
        out: list[Decision] = []
        rule = self.rules.get(watch.rule) if watch.key not in self.orphaned else None
        if status is IncidentStatus.RESOLVED:
            for series in watch.series.values():
                self._end_episode(series, now, "incident", out)
            self._resolve(watch, rule, now, body, out)
            for series in watch.series.values():
                if series.failing:  # still failing: a fresh episode, a fresh open_after clock
                    series.failing_since = now
            self.orphaned.pop(watch.key, None)
        else:
            watch.incident.status = status
            if status is IncidentStatus.MONITORING:
                watch.stable_since = now
            elif status is IncidentStatus.IDENTIFIED:
                watch.reopen_status = status
            self._update(
                watch, rule, now, watch.incident.component_status, "by hand", True, out, body
            )
        if rule is not None:
            self._schedule(watch, rule, now)
        self.changed = True
        return out


def incident_id(rule: str, component: str, opened_at: float) -> str:
    """Deterministic, so replay is repeatable and two writers of one incident collide."""
    digest = hashlib.sha1(f"{rule}|{component}|{opened_at:.3f}".encode(), usedforsecurity=False)
    return digest.hexdigest()[:12]


def _worst(failing: list[Series]) -> ComponentStatus:
    return max(
        (s.status for s in failing if s.status is not None),
        key=lambda status: status.severity,
        default=ComponentStatus.MAJOR_OUTAGE,
    )


def _markets(failing: list[Series]) -> tuple[str, ...]:
    return tuple(sorted({market for s in failing for market in s.failed_markets()}))


def _split(series: Series) -> tuple[str, ...]:
    return series.split
