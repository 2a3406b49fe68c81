"""The rule engine: pure, clock-free, deterministic.

Callers feed results and events, then call `evaluate(now)`; the engine returns decisions and
says, through `next_deadline()`, when it next needs to be asked. It reads no clock and does
no I/O, which is what lets a 30-minute rule be tested in milliseconds and replay be exact.

Logically every series is evaluated at every evaluation time. Only series whose inputs
changed are actually judged: new results, a timer (open/resolve deadline), the oldest
result leaving the window, a maintenance boundary, a deploy flag or an inhibitor resolving.
A series with none of these would reach the same verdict as last time.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

from detector.engine.calendar import Calendar
from detector.engine.lifecycle import Lifecycle
from detector.engine.rulematch import compile_match, component_matches, in_rule_order, rank_rules
from detector.engine.series import Series, SeriesError, SeriesKey, Watch, WatchKey
from detector.engine.texts import Texts
from detector.engine.when import LATENCY_METRICS
from detector.engine.window import Entry, Observed
from detector.model import (
    Decision,
    Deploy,
    DeployFlaggedBad,
    Event,
    IncidentStatus,
    Maintenance,
    ProbeResult,
    Rule,
    quorum_needed,
)

Due = dict[Watch, list[Series]]


class Engine(Lifecycle):
    def __init__(
        self, rules: Sequence[Rule], component_names: Mapping[str, str] | None = None
    ) -> None:
        self.texts = Texts(component_names or {})
        self.calendar = Calendar()
        self.watches: dict[WatchKey, Watch] = {}
        self.series: dict[SeriesKey, Series] = {}
        self.changed = False  # persisted state changed since the caller last saved it
        self._dirty: set[Series] = set()
        self._dirty_watches: set[Watch] = set()  # stepped without re-judging any series
        # Heaps of (when, push number, key): the number breaks ties between equal times,
        # which are common (a probe round shares its timestamp), without comparing keys.
        self._timers: list[tuple[float, int, SeriesKey]] = []  # open deadlines
        self._wakes: list[tuple[float, int, SeriesKey]] = []  # oldest result leaving a window
        self._resolves: list[tuple[float, int, WatchKey]] = []  # resolve deadlines
        self._pushes = 0
        self._open_by_rule: Counter[str] = Counter()
        self._last_eval: float | None = None
        # Watches whose rule vanished (or stopped matching) on reload while their incident was
        # open: kept open, never publicly resolved by a reload; see orphans().
        self.orphaned: dict[WatchKey, Watch] = {}
        self.errors: list[SeriesError] = []  # watches whose step raised in the last evaluate
        self.broken: dict[WatchKey, int] = {}  # consecutive failed passes per watch
        self.set_rules(rules)

    # ------------------------------------------------------------------ configuration
    def set_rules(self, rules: Sequence[Rule]) -> None:
        """Swap the rule set; watches of rules whose name is unchanged keep their state."""
        self.rules = {rule.name: rule for rule in rules}
        self._rank = rank_rules(rules)
        self._patterns = {rule.name: compile_match(rule) for rule in rules}
        # Computed once per rule, not per judgement: which metrics its conditions read.
        self._needs = {rule.name: rule.metrics for rule in rules}
        self._solo = {rule.name: quorum_needed(rule.quorum, 1) == 1 for rule in rules}
        self._latency = {
            name: not needs.isdisjoint(LATENCY_METRICS) for name, needs in self._needs.items()
        }
        self._ordered_rules = sorted(self._rank, key=self._rank.__getitem__)
        self._match_cache: dict[tuple[str, str, str], tuple[Rule, ...]] = {}
        for key, watch in list(self.watches.items()):
            if not self._watches_still(key):
                self._drop(watch)
                if watch.incident is not None:
                    self.orphaned[key] = watch
        for key in list(self.orphaned):
            if self._watches_still(key):  # its rule came back: the watch picks the incident up
                self._adopt(self.orphaned.pop(key))
        for watch in self.watches.values():
            split_by = self.rules[watch.rule].split_by
            if watch.split_by != split_by:
                self._resplit(watch, split_by)
            for series in watch.series.values():
                series.set_track_latency(self._latency[watch.rule])
                self._dirty.add(series)  # timings may have changed

    def _watches_still(self, key: WatchKey) -> bool:
        rule = self.rules.get(key[0])
        return rule is not None and component_matches(rule, key[1])

    def _drop(self, watch: Watch) -> None:
        del self.watches[watch.key]
        for series in watch.series.values():
            del self.series[series.key]
            self._dirty.discard(series)
        self._dirty_watches.discard(watch)

    def _resplit(self, watch: Watch, split_by: tuple[str, ...]) -> None:
        """`split_by` changed on reload: the old series judge something the rule no longer
        asks about, so they go (episodes without a record); the incident stays and follows the
        new series, which fill from new results."""
        for series in watch.series.values():
            del self.series[series.key]
            self._dirty.discard(series)
        watch.series.clear()
        watch.blockers.clear()
        watch.split_by = split_by
        self._dirty_watches.add(watch)

    def _adopt(self, watch: Watch) -> None:
        self.watches[watch.key] = watch
        for series in watch.series.values():
            self.series[series.key] = series

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
    def observe(self, result: Observed) -> None:
        rules = self.rules_for(result.kind, result.component, result.probe)
        if not rules:
            return
        entry = Entry(result.at, result.ok, result.latency_s, result.labels.get("market"))
        instance = result.instance
        for rule in rules:
            split_by = rule.split_by
            if not split_by:
                split: tuple[str, ...] = ()
            elif len(split_by) == 1:  # the common split (market): no generator per result
                split = (result.labels.get(split_by[0], ""),)
            else:
                split = tuple(result.labels.get(label, "") for label in split_by)
            series = self.series.get((rule.name, result.component, split))
            if series is None:
                series = self._new_series(rule, result.component, split)
            solo = series.solo
            if solo is not None and not result.suspect and series.solo_instance == instance:
                solo.add(entry)  # the common case without a dict lookup
            else:
                series.add(entry, instance, result.suspect)
            if series.fresh_after is not None and result.at >= series.fresh_after:
                series.fresh_after = None
                series.watch.blockers.discard(series)
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
        """Step every watch whose inputs changed. A watch whose step raises is recorded in
        `errors` and `broken` and skipped: one bad rule, series or deploy never costs the
        other components their decisions."""
        decisions: list[Decision] = []
        self.errors = []
        if self._last_eval is not None and now < self._last_eval:
            self._clock_stepped_back(self._last_eval - now, now)
        due = self._collect_due(now)
        resolved_any = False
        broken = self.broken
        for watch in in_rule_order(due, self._ordered_rules):
            stepped = due[watch]
            try:  # inline, not a helper: this loop runs once per changed series
                resolved_any |= self._step(watch, stepped, now, decisions)
            except Exception as error:  # a bug in one watch stays in that watch
                self._record_error(watch, stepped, error)
            else:
                if broken:
                    broken.pop(watch.key, None)
        if resolved_any:  # an inhibitor may have let go: inhibited episodes get their turn
            waiting: Due = {}
            for watch in self.watches.values():
                held = [s for s in watch.series.values() if s.inhibited]
                if held and watch.incident is None:
                    waiting[watch] = held
            for watch in in_rule_order(waiting, self._ordered_rules):
                try:
                    self._step(watch, waiting[watch], now, decisions)
                except Exception as error:
                    self._record_error(watch, waiting[watch], error)
        self._last_eval = now
        if decisions:
            self.changed = True
        return decisions

    def _record_error(self, watch: Watch, due: list[Series], error: Exception) -> None:
        key = watch.key
        self.broken[key] = self.broken.get(key, 0) + 1
        self.errors.append(SeriesError(watch.rule, watch.component, _one_line(error)))
        self._dirty.update(due)  # retried at the next evaluation
        self._dirty_watches.add(watch)

    def _clock_stepped_back(self, step: float, now: float) -> None:
        """The caller's wall clock jumped back by (at least) `step`. Times stamped before the
        jump lie in the future now; moved back by the step, windows still empty and clocks
        still run out at the right moment instead of an hour late."""
        for watch in (*self.watches.values(), *self.orphaned.values()):
            if watch.stable_since is not None and watch.stable_since > now:
                watch.stable_since -= step
            watch.timer_at = None
            for series in watch.series.values():
                for window in series.windows.values():
                    window.shift_after(now, step)
                series.suspects = type(series.suspects)(
                    sorted(t - step if t > now else t for t in series.suspects)
                )
                for slot in ("failing_since", "fresh_after"):
                    moment = getattr(series, slot)
                    if moment is not None and moment > now:
                        setattr(series, slot, moment - step)
                series.timer_at = series.wake_at = None
        for heap in (self._timers, self._wakes, self._resolves):
            heap.clear()
        self._dirty.update(self.series.values())  # re-arms every timer from the moved clocks
        self._last_eval = now

    def next_deadline(self) -> float | None:
        """When the caller must evaluate next: an open/resolve deadline, a maintenance
        boundary, or the oldest result of a window leaving it (a silent probe's window
        empties then, which `no_data` rules must see)."""
        candidates = []
        for heap, current in ((self._timers, self._series_timer), (self._wakes, self._series_wake)):
            while heap and current(heap[0]) is None:
                heapq.heappop(heap)  # stale: re-armed or dropped
            if heap:
                candidates.append(heap[0][0])
        resolves = self._resolves
        while resolves and self._watch_timer(resolves[0]) is None:
            heapq.heappop(resolves)
        if resolves:
            candidates.append(resolves[0][0])
        after = self._last_eval if self._last_eval is not None else float("-inf")
        boundary = self.calendar.boundaries_after(after)
        if boundary is not None:
            candidates.append(boundary)
        return min(candidates) if candidates else None

    def _collect_due(self, now: float) -> Due:
        due: Due = {watch: [] for watch in self._dirty_watches}
        self._dirty_watches = set()
        dirty = self._dirty
        self._dirty = set()
        for heap, current in ((self._timers, self._series_timer), (self._wakes, self._series_wake)):
            while heap and heap[0][0] <= now:
                entry: tuple[float, int, SeriesKey] = heapq.heappop(heap)
                series = current(entry)
                if series is not None:
                    dirty.add(series)
        while self._resolves and self._resolves[0][0] <= now:
            watch = self._watch_timer(heapq.heappop(self._resolves))
            if watch is not None:
                due.setdefault(watch, [])
        if self._last_eval is not None:
            changing = set(self.calendar.components_changing(self._last_eval, now))
            if changing:
                dirty.update(s for s in self.series.values() if s.component in changing)
        for series in dirty:  # most watches have one series: no list per lookup
            listed = due.get(series.watch)
            if listed is None:
                due[series.watch] = [series]
            else:
                listed.append(series)
        return due

    def _series_timer(self, entry: tuple[float, int, SeriesKey]) -> Series | None:
        series = self.series.get(entry[2])
        return series if series is not None and series.timer_at == entry[0] else None

    def _series_wake(self, entry: tuple[float, int, SeriesKey]) -> Series | None:
        series = self.series.get(entry[2])
        return series if series is not None and series.wake_at == entry[0] else None

    def _watch_timer(self, entry: tuple[float, int, WatchKey]) -> Watch | None:
        watch = self.watches.get(entry[2])
        return watch if watch is not None and watch.timer_at == entry[0] else None

    # ------------------------------------------------------------------ internals
    def _new_series(self, rule: Rule, component: str, split: tuple[str, ...]) -> Series:
        watch = self.watches.get((rule.name, component))
        if watch is None:
            watch = Watch(rule.name, component, split_by=rule.split_by)
            self.watches[(rule.name, component)] = watch
        market = None
        if "market" in rule.split_by:
            market = split[rule.split_by.index("market")] or None
        series = Series(watch, split, market, self._latency[rule.name])
        watch.series[split] = series
        self.series[series.key] = series
        return series

    def _touch_components(self, components: Iterable[str]) -> None:
        wanted = set(components)
        self._dirty.update(s for s in self.series.values() if s.component in wanted)

    def _schedule(
        self, watch: Watch, rule: Rule, now: float, stepped: Iterable[Series] | None = None
    ) -> None:
        """Re-arm the timers of the `stepped` series (default: all) and the watch's."""
        for series in watch.series.values() if stepped is None else stepped:
            timer: float | None = None
            pending = watch.incident is None and not series.inhibited
            if pending and series.failing_since is not None:
                deadline = series.failing_since + rule.open_after
                timer = deadline if deadline > now else None
            if timer is not None and timer != series.timer_at:
                self._pushes += 1
                heapq.heappush(self._timers, (timer, self._pushes, series.key))
            series.timer_at = timer
            solo = series.solo
            if solo is not None and not series.suspects:
                oldest = solo.entries[0].at if solo.entries else None
            else:
                oldest = series.oldest()
            wake = oldest + rule.window if oldest is not None else None
            if wake is not None and wake != series.wake_at:
                self._pushes += 1
                heapq.heappush(self._wakes, (wake, self._pushes, series.key))
            series.wake_at = wake
        resolve: float | None = None
        incident = watch.incident
        monitoring = incident is not None and incident.status is IncidentStatus.MONITORING
        if monitoring and watch.stable_since is not None:
            resolve = watch.stable_since + rule.resolve_after
        if resolve is not None and resolve != watch.timer_at:
            self._pushes += 1
            heapq.heappush(self._resolves, (resolve, self._pushes, watch.key))
        watch.timer_at = resolve

    def restore_counts(self) -> None:
        """Recount open incidents per rule and re-arm timers after a state restore."""
        self._open_by_rule = Counter(
            [w.incident.rule for w in self._all_watches() if w.incident is not None]
        )
        self._dirty.update(self.series.values())
        self._dirty_watches.update(self.watches.values())


def _one_line(error: Exception) -> str:
    return " ".join(f"{type(error).__name__}: {error}".split())
