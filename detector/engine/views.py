"""Read-only views of the engine for the daemon, metrics, replay and the API."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

from detector.engine.calendar import Calendar
from detector.engine.series import Series, SeriesKey, Watch, WatchKey
from detector.model import ComponentStatus, Episode, Incident, Rule


class Views:
    """State the views read; `Engine` provides it."""

    calendar: Calendar
    rules: Mapping[str, Rule]
    watches: dict[WatchKey, Watch]
    series: dict[SeriesKey, Series]
    orphaned: dict[WatchKey, Watch]
    _open_by_rule: Counter[str]

    def open_incidents(self) -> list[Incident]:
        return [w.incident for w in self._all_watches() if w.incident is not None]

    def orphans(self) -> list[Incident]:
        """Open incidents whose rule was removed or no longer matches their component: they
        stay open until on-call resolves them (manual_update) or the rule comes back."""
        return [w.incident for w in self.orphaned.values() if w.incident is not None]

    def _all_watches(self) -> list[Watch]:
        return [*self.watches.values(), *self.orphaned.values()]

    def component_statuses(
        self, now: float, components: Iterable[str] = ()
    ) -> dict[str, ComponentStatus]:
        """Worst status of each component's open incidents; maintenance shows blue."""
        statuses: dict[str, ComponentStatus] = dict.fromkeys(
            components, ComponentStatus.OPERATIONAL
        )
        for watch in self._all_watches():
            statuses.setdefault(watch.component, ComponentStatus.OPERATIONAL)
            incident = watch.incident
            if incident is not None and (
                incident.component_status.severity > statuses[watch.component].severity
            ):
                statuses[watch.component] = incident.component_status
        for maintenance in self.calendar.maintenances.values():
            for component in maintenance.components:
                if maintenance.start <= now < maintenance.end:
                    statuses[component] = ComponentStatus.UNDER_MAINTENANCE
        return statuses

    def failure_durations(self, now: float) -> dict[WatchKey, float]:
        """Per (rule, component): how long its longest running failure has lasted."""
        durations = {}
        for key, watch in self.watches.items():
            since = watch.failing_since
            durations[key] = now - since if since is not None else 0.0
        return durations

    def open_counts(self) -> dict[str, int]:
        return {name: self._open_by_rule[name] for name in self.rules}

    def running_episodes(self) -> list[Episode]:
        return [
            Episode(
                s.rule,
                s.component,
                s.failing_since,
                None,
                "incident" if s.watch.incident else "inhibited" if s.inhibited else "pending",
                s.watch.incident.id if s.watch.incident else None,
            )
            for s in self.series.values()
            if s.failing_since is not None
        ]
