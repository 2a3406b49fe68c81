"""The rule engine: pure, clock-free, deterministic.

Callers feed results and events, then call `evaluate(now)`; the engine returns decisions and
says, through `next_deadline()`, when it next needs to be asked. It reads no clock and does
no I/O, which is what lets a 30-minute rule be tested in milliseconds and replay be exact.

Logically every series is evaluated at every evaluation time. Only series whose inputs
changed are actually stepped: new results, a timer (open/resolve deadline), the oldest
result leaving the window, a maintenance boundary, a deploy flag or an inhibitor resolving.
A series with none of these would reach the same verdict as last time.
"""

from __future__ import annotations

import hashlib
import heapq
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

from detector.engine.rulematch import compile_match, component_matches, rank_rules
from detector.engine.series import Calendar, Series, SeriesKey
from detector.engine.texts import Texts
from detector.engine.when import LATENCY_METRICS
from detector.engine.window import Entry, Window
from detector.model import (
    ComponentStatus,
    Decision,
    Deploy,
    DeployFlaggedBad,
    Episode,
    EpisodeEnded,
    EpisodeOutcome,
    Event,
    Incident,
    IncidentOpened,
    IncidentResolved,
    IncidentStatus,
    IncidentUpdate,
    IncidentUpdated,
    Maintenance,
    NoData,
    ProbeResult,
    Rule,
)

_OPEN = (IncidentStatus.INVESTIGATING, IncidentStatus.IDENTIFIED)


class Engine:
    def __init__(
        self, rules: Sequence[Rule], component_names: Mapping[str, str] | None = None
    ) -> None:
        self.texts = Texts(component_names or {})
        self.calendar = Calendar()
        self.series: dict[SeriesKey, Series] = {}
        self.changed = False  # persisted state changed since the caller last saved it
        self._dirty: set[Series] = set()
        self._timers: list[tuple[float, SeriesKey]] = []
        self._wakes: list[tuple[float, SeriesKey]] = []
        self._open_by_rule: Counter[str] = Counter()
        self._last_eval: float | None = None
        self._orphans: list[Series] = []
        self.set_rules(rules)

    # ------------------------------------------------------------------ configuration
    def set_rules(self, rules: Sequence[Rule]) -> None:
        """Swap the rule set; series of rules whose name is unchanged keep their state."""
        self.rules = {rule.name: rule for rule in rules}
        self._rank = rank_rules(rules)
        self._inhibits: dict[str, list[str]] = {}
        for rule in rules:
            for target in rule.inhibited_by:
                self._inhibits.setdefault(target, []).append(rule.name)
        self._patterns = {rule.name: compile_match(rule) for rule in rules}
        # Computed once per rule, not per judgement: which metrics its conditions read.
        self._needs = {rule.name: rule.metrics for rule in rules}
        self._latency = {
            name: not needs.isdisjoint(LATENCY_METRICS) for name, needs in self._needs.items()
        }
        self._ordered_rules = sorted(self._rank, key=self._rank.__getitem__)
        self._match_cache: dict[tuple[str, str, str], tuple[Rule, ...]] = {}
        for key, series in list(self.series.items()):
            if key[0] not in self.rules or not component_matches(self.rules[key[0]], key[1]):
                del self.series[key]
                self._dirty.discard(series)
                if series.incident is not None:
                    self._orphans.append(series)  # resolved at the next evaluation
            else:
                series.window.track_latency(self._latency[key[0]])
                self._dirty.add(series)  # timings may have changed

    def rules_for(self, kind: str, component: str, probe: str) -> tuple[Rule, ...]:
        cache_key = (kind, component, probe)
        found = self._match_cache.get(cache_key)
        if found is None:
            found = tuple(
                rule
                for rule in self.rules.values()
                if self._patterns[rule.name](kind, component, probe)
            )
            self._match_cache[cache_key] = found
        return found

    # ------------------------------------------------------------------ input
    def observe(self, result: ProbeResult) -> None:
        rules = self.rules_for(result.kind, result.component, result.probe)
        if not rules:
            return
        entry = Entry(result.at, result.ok, result.latency_s, result.labels.get("market"))
        for rule in rules:
            series = self._series(rule.name, result.component)
            series.window.add(entry)
            if series.fresh_after is not None and result.at >= series.fresh_after:
                series.fresh_after = None
            self._dirty.add(series)

    def add_deploy(self, deploy: Deploy) -> None:
        self.calendar.add_deploy(deploy)
        self.changed = True
        if deploy.bad:
            self._touch_components(deploy.components)

    def flag_deploy_bad(self, flag: DeployFlaggedBad) -> Deploy | None:
        deploy = self.calendar.flag_bad(flag.id, flag.at)
        if deploy is not None:
            self.changed = True
            self._touch_components(deploy.components)
        return deploy

    def add_maintenance(self, maintenance: Maintenance) -> None:
        self.calendar.add_maintenance(maintenance)
        self.changed = True
        self._touch_components(maintenance.components)

    def cancel_maintenance(self, maintenance_id: str) -> None:
        old = self.calendar.remove_maintenance(maintenance_id)
        if old is not None:
            self.changed = True
            self._touch_components(old.components)

    def feed(self, event: Event) -> None:
        """Any event of the events file."""
        if isinstance(event, ProbeResult):
            self.observe(event)
        elif isinstance(event, Deploy):
            self.add_deploy(event)
        elif isinstance(event, DeployFlaggedBad):
            self.flag_deploy_bad(event)
        else:
            self.add_maintenance(event)

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, now: float) -> list[Decision]:
        decisions: list[Decision] = []
        due = self._collect_due(now)
        resolved_any = False
        for series in self._in_order(due):
            resolved_any |= self._step(series, now, decisions)
        for series in self._orphans:
            self._resolve(series, now, "The rule that opened this incident was removed.", decisions)
            resolved_any = True
        self._orphans.clear()
        if resolved_any:  # an inhibitor may have let go: inhibited episodes get their turn
            waiting = [s for s in self.series.values() if s.inhibited and s.incident is None]
            for series in self._in_order(waiting):
                self._step(series, now, decisions)
        self._last_eval = now
        if decisions:
            self.changed = True
        return decisions

    def next_deadline(self) -> float | None:
        """When the caller must evaluate next: an open/resolve deadline, a maintenance
        boundary, or the oldest result of a window leaving it (a silent probe's window
        empties then, which `no_data` rules must see)."""
        candidates = []
        for heap, slot in ((self._timers, "timer_at"), (self._wakes, "wake_at")):
            while heap and not self._current(heap[0], slot):
                heapq.heappop(heap)  # stale: the series re-armed or was dropped
            if heap:
                candidates.append(heap[0][0])
        after = self._last_eval if self._last_eval is not None else float("-inf")
        boundary = self.calendar.boundaries_after(after)
        if boundary is not None:
            candidates.append(boundary)
        return min(candidates) if candidates else None

    def _collect_due(self, now: float) -> set[Series]:
        due = self._dirty
        self._dirty = set()
        for heap, slot in ((self._timers, "timer_at"), (self._wakes, "wake_at")):
            while heap and heap[0][0] <= now:
                entry = heapq.heappop(heap)
                if self._current(entry, slot):
                    due.add(self.series[entry[1]])
        if self._last_eval is not None:
            changing = set(self.calendar.components_changing(self._last_eval, now))
            if changing:
                due.update(s for s in self.series.values() if s.component in changing)
        return due

    def _current(self, entry: tuple[float, SeriesKey], slot: str) -> bool:
        series = self.series.get(entry[1])
        return series is not None and getattr(series, slot) == entry[0]

    def _in_order(self, due: Iterable[Series]) -> list[Series]:
        """Inhibitors first, then by component: deterministic output, cheap for 100k."""
        by_rule: dict[str, list[Series]] = {}
        for series in due:
            by_rule.setdefault(series.rule, []).append(series)
        if len(by_rule) == 1:
            only = next(iter(by_rule.values()))
            return sorted(only, key=_component) if len(only) > 1 else only
        ordered: list[Series] = []
        for name in self._ordered_rules:
            group = by_rule.get(name)
            if group:
                ordered.extend(sorted(group, key=_component))
        return ordered

    def _step(self, series: Series, now: float, out: list[Decision]) -> bool:
        """Evaluate one series at `now`; returns True when it resolved an incident."""
        rule = self.rules[series.rule]
        if series.fresh_after is not None:
            # Restored after downtime: the old verdict stands only once a fresh result
            # confirms it, so the time down counts as failing only if the failure is still there.
            self._schedule(series, rule, now)
            return False
        self._judge(series, rule, now)
        resolved = False
        calendar = self.calendar
        if (
            series.incident is None
            and calendar.maintenances
            and calendar.in_maintenance(series.component, now)
        ):
            self._end_episode(series, now, "maintenance", out)
        elif series.failing:
            self._on_failing(series, rule, now, out)
        else:
            self._end_episode(series, now, None, out)
            resolved = self._on_stable(series, rule, now, out)
        self._schedule(series, rule, now)
        return resolved

    def _judge(self, series: Series, rule: Rule, now: float) -> None:
        window = series.window
        window.evict(now - rule.window)
        count = len(window)
        if count < rule.min_results:
            if rule.no_data is NoData.KEEP:
                return  # verdict, status and clocks unchanged
            series.failing = rule.no_data is NoData.FAILING
            series.status = rule.impact[0].status if series.failing else None
            series.values, series.condition, series.no_data = None, None, count
            return
        values = window.metrics(self._needs[rule.name])
        series.values, series.no_data = values, None
        for impact in rule.impact:
            if impact.when.evaluate(values):
                series.failing, series.status, series.condition = True, impact.status, impact.when
                return
        series.failing, series.status, series.condition = False, None, None

    def explain(self, series: Series) -> str:
        """Why the last judgement came out as it did, with the values seen."""
        rule = self.rules[series.rule]
        if series.no_data is not None:
            return self.texts.no_data(rule, series.no_data)
        if series.values is None:
            return "no evaluation since restart"
        if series.condition is not None:
            return series.condition.explain(series.values)
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
        series = next(
            (s for s in self.series.values() if s.incident and s.incident.id == incident_id_),
            None,
        )
        if series is None or series.incident is None:
            raise KeyError(incident_id_)
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

    # ------------------------------------------------------------------ views
    def open_incidents(self) -> list[Incident]:
        return [s.incident for s in self.series.values() if s.incident is not None]

    def component_statuses(
        self, now: float, components: Iterable[str] = ()
    ) -> dict[str, ComponentStatus]:
        """Worst status of each component's open incidents; maintenance shows blue."""
        statuses: dict[str, ComponentStatus] = dict.fromkeys(
            components, ComponentStatus.OPERATIONAL
        )
        for series in self.series.values():
            statuses.setdefault(series.component, ComponentStatus.OPERATIONAL)
            incident = series.incident
            if incident is not None and (
                incident.component_status.severity > statuses[series.component].severity
            ):
                statuses[series.component] = incident.component_status
        for maintenance in self.calendar.maintenances.values():
            for component in maintenance.components:
                if maintenance.start <= now < maintenance.end:
                    statuses[component] = ComponentStatus.UNDER_MAINTENANCE
        return statuses

    def failure_durations(self, now: float) -> dict[SeriesKey, float]:
        return {
            key: (now - s.failing_since if s.failing_since is not None else 0.0)
            for key, s in self.series.items()
        }

    def open_counts(self) -> dict[str, int]:
        return {name: self._open_by_rule[name] for name in self.rules}

    def running_episodes(self) -> list[Episode]:
        return [
            Episode(
                s.rule,
                s.component,
                s.failing_since,
                None,
                "incident" if s.incident else "inhibited" if s.inhibited else "pending",
                s.incident.id if s.incident else None,
            )
            for s in self.series.values()
            if s.failing_since is not None
        ]

    # ------------------------------------------------------------------ internals
    def _series(self, rule: str, component: str) -> Series:
        key = (rule, component)
        series = self.series.get(key)
        if series is None:
            window = Window(track_latency=self._latency[rule])
            series = self.series[key] = Series(rule, component, window)
        return series

    def _touch_components(self, components: Iterable[str]) -> None:
        wanted = set(components)
        self._dirty.update(s for s in self.series.values() if s.component in wanted)

    def _schedule(self, series: Series, rule: Rule, now: float) -> None:
        timer: float | None = None
        if series.incident is None:
            if series.failing_since is not None and not series.inhibited:
                deadline = series.failing_since + rule.open_after
                timer = deadline if deadline > now else None
        elif series.incident.status is IncidentStatus.MONITORING and series.stable_since:
            timer = series.stable_since + rule.resolve_after
        if timer is not None and timer != series.timer_at:
            heapq.heappush(self._timers, (timer, series.key))
        series.timer_at = timer
        oldest = series.window.oldest()
        wake = oldest + rule.window if oldest is not None else None
        if wake is not None and wake != series.wake_at:
            heapq.heappush(self._wakes, (wake, series.key))
        series.wake_at = wake

    def restore_counts(self) -> None:
        """Recount open incidents per rule and re-arm timers after a state restore."""
        self._open_by_rule = Counter(
            s.incident.rule for s in self.series.values() if s.incident is not None
        )
        for series in self.series.values():
            self._dirty.add(series)


def incident_id(rule: str, component: str, opened_at: float) -> str:
    """Deterministic, so replay is repeatable and two writers of one incident collide."""
    digest = hashlib.sha1(f"{rule}|{component}|{opened_at:.3f}".encode(), usedforsecurity=False)
    return digest.hexdigest()[:12]


def _component(series: Series) -> str:
    return series.component
