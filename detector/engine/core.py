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

import heapq
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

from detector.engine.calendar import Calendar
from detector.engine.lifecycle import Lifecycle
from detector.engine.rulematch import compile_match, component_matches, rank_rules
from detector.engine.series import Series, SeriesError, SeriesKey
from detector.engine.texts import Texts
from detector.engine.when import LATENCY_METRICS
from detector.engine.window import Entry, Window
from detector.model import (
    ComponentStatus,
    Decision,
    Deploy,
    DeployFlaggedBad,
    Episode,
    Event,
    Incident,
    IncidentStatus,
    Maintenance,
    NoData,
    ProbeResult,
    Rule,
)


class Engine(Lifecycle):
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
        # Series whose rule vanished (or stopped matching) on reload while their incident was
        # open: kept open, never publicly resolved by a reload; see orphans().
        self.orphaned: dict[SeriesKey, Series] = {}
        self.errors: list[SeriesError] = []  # series whose step raised in the last evaluate
        self.broken: dict[SeriesKey, int] = {}  # consecutive failed passes per series
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
            if not self._watches(key):
                del self.series[key]
                self._dirty.discard(series)
                if series.incident is not None:
                    self.orphaned[key] = series
        for key in list(self.orphaned):
            if self._watches(key):  # its rule came back: the series picks the incident up
                self.series[key] = self.orphaned.pop(key)
        for key, series in self.series.items():
            series.window.track_latency(self._latency[key[0]])
            self._dirty.add(series)  # timings may have changed

    def _watches(self, key: SeriesKey) -> bool:
        rule = self.rules.get(key[0])
        return rule is not None and component_matches(rule, key[1])

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
        """Step every series whose inputs changed. A series whose step raises is recorded in
        `errors` and `broken` and skipped: one bad rule, series or deploy never costs the
        other components their decisions."""
        decisions: list[Decision] = []
        self.errors = []
        if self._last_eval is not None and now < self._last_eval:
            self._clock_stepped_back(self._last_eval - now, now)
        due = self._collect_due(now)
        resolved_any = False
        for series in self._in_order(due):
            resolved_any |= self._guarded_step(series, now, decisions)
        if resolved_any:  # an inhibitor may have let go: inhibited episodes get their turn
            waiting = [s for s in self.series.values() if s.inhibited and s.incident is None]
            for series in self._in_order(waiting):
                self._guarded_step(series, now, decisions)
        self._last_eval = now
        if decisions:
            self.changed = True
        return decisions

    def _guarded_step(self, series: Series, now: float, out: list[Decision]) -> bool:
        try:
            resolved = self._step(series, now, out)
        except Exception as error:
            key = series.key
            self.broken[key] = self.broken.get(key, 0) + 1
            self.errors.append(SeriesError(series.rule, series.component, _one_line(error)))
            self._dirty.add(series)  # retried at the next evaluation
            return False
        if self.broken:
            self.broken.pop(series.key, None)
        return resolved

    def _clock_stepped_back(self, step: float, now: float) -> None:
        """The caller's wall clock jumped back by (at least) `step`. Times stamped before the
        jump lie in the future now; moved back by the step, windows still empty and clocks
        still run out at the right moment instead of an hour late."""
        for series in (*self.series.values(), *self.orphaned.values()):
            series.window.shift_after(now, step)
            for slot in ("failing_since", "stable_since", "fresh_after"):
                moment = getattr(series, slot)
                if moment is not None and moment > now:
                    setattr(series, slot, moment - step)
            series.timer_at = series.wake_at = None
        self._timers.clear()
        self._wakes.clear()
        self._dirty.update(self.series.values())  # re-arms every timer from the moved clocks
        self._last_eval = now

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
            series.values, series.matched, series.short_count = None, None, count
            return
        values = window.metrics(self._needs[rule.name])
        series.values, series.short_count = values, None
        for impact in rule.impact:
            if impact.when.evaluate(values):
                series.failing, series.status, series.matched = True, impact.status, impact.when
                return
        series.failing, series.status, series.matched = False, None, None

    # ------------------------------------------------------------------ views
    def open_incidents(self) -> list[Incident]:
        return [s.incident for s in self._all_series() if s.incident is not None]

    def orphans(self) -> list[Incident]:
        """Open incidents whose rule was removed or no longer matches their component: they
        stay open until on-call resolves them (manual_update) or the rule comes back."""
        return [s.incident for s in self.orphaned.values() if s.incident is not None]

    def _all_series(self) -> list[Series]:
        return [*self.series.values(), *self.orphaned.values()]

    def component_statuses(
        self, now: float, components: Iterable[str] = ()
    ) -> dict[str, ComponentStatus]:
        """Worst status of each component's open incidents; maintenance shows blue."""
        statuses: dict[str, ComponentStatus] = dict.fromkeys(
            components, ComponentStatus.OPERATIONAL
        )
        for series in self._all_series():
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
            s.incident.rule for s in self._all_series() if s.incident is not None
        )
        for series in self.series.values():
            self._dirty.add(series)


def _component(series: Series) -> str:
    return series.component


def _one_line(error: Exception) -> str:
    return " ".join(f"{type(error).__name__}: {error}".split())
