"""The brute-force reference for the replay properties (tests/test_properties.py).

It knows nothing of the engine's incremental machinery: at every evaluation time it recomputes
each rule's window `(t - window, t]` from the raw results and runs the DESIGN.md "Timing
semantics" state machine for every (rule, component), every series at every evaluation time.
"""

from __future__ import annotations

import bisect
import fnmatch
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from detector.model import (
    ComponentStatus,
    Deploy,
    DeployFlaggedBad,
    Event,
    Maintenance,
    Match,
    NoData,
    ProbeResult,
    Rule,
)
from detector.replay import ReplayReport

# ------------------------------------------------------------------ brute-force metrics

# Each `when` text beside a plain-Python reading of it over independently computed metrics.
Metrics = Mapping[str, float]
CONDITIONS: dict[str, Callable[[Metrics], bool]] = {
    "error_ratio >= 0.5": lambda m: m["error_ratio"] >= 0.5,
    "consecutive_failures >= 2": lambda m: m["consecutive_failures"] >= 2,
    "latency_p95 > 5s": lambda m: m["latency_p95"] > 5.0,
    "failures >= 3 and error_ratio > 0.3": lambda m: m["failures"] >= 3 and m["error_ratio"] > 0.3,
}


def window_metrics(window: Sequence[ProbeResult]) -> dict[str, float]:
    """Recomputed from scratch: counts, trailing failure run, nearest-rank p95."""
    results = len(window)
    failures = sum(1 for r in window if not r.ok)
    trailing = 0
    for entry in reversed(window):
        if entry.ok:
            break
        trailing += 1
    latencies = sorted(r.latency_s for r in window if r.latency_s is not None)
    p95 = latencies[max(0, math.ceil(0.95 * len(latencies)) - 1)] if latencies else 0.0
    return {
        "results": float(results),
        "failures": float(failures),
        "error_ratio": failures / results if results else 0.0,
        "consecutive_failures": float(trailing),
        "latency_p95": p95,
    }


# ------------------------------------------------------------------ scenarios


@dataclass
class Scenario:
    rules: list[Rule]
    checks: dict[str, list[Callable[[Metrics], bool]]]  # rule name -> impact predicates
    events: list[Event]

    @property
    def results(self) -> list[ProbeResult]:
        return [e for e in self.events if isinstance(e, ProbeResult)]

    @property
    def maintenances(self) -> list[Maintenance]:
        return [e for e in self.events if isinstance(e, Maintenance)]


# ------------------------------------------------------------------ the reference


@dataclass
class RefIncident:
    rule: str
    component: str
    opened_at: float
    cause: str
    deploy: str | None
    impact: ComponentStatus
    resolved_at: float | None = None
    monitoring: bool = False
    stable_since: float | None = None

    def row(self) -> tuple[object, ...]:
        return (self.rule, self.component, self.opened_at, self.resolved_at, self.cause,
                self.deploy, str(self.impact))  # fmt: skip


@dataclass
class Verdict:
    at: float
    failing: bool
    status: ComponentStatus | None
    in_maintenance: bool


def verdicts(
    scenario: Scenario, rule_: Rule, component: str, times: Sequence[float]
) -> list[Verdict]:
    """The rule's verdict at every evaluation time since the series' first result, brute force.

    `keep` carries the previous verdict (and status) through a window with too few results.
    """
    mine = [r for r in scenario.results if r.component == component and _matches(rule_.match, r)]
    if not mine:
        return []
    stamps = [r.at for r in mine]
    checks = scenario.checks[rule_.name]
    out: list[Verdict] = []
    failing, status = False, None
    for moment in times:
        if moment < stamps[0]:
            continue
        window = mine[
            bisect.bisect_right(stamps, moment - rule_.window) : bisect.bisect_right(stamps, moment)
        ]
        if len(window) < rule_.min_results:
            if rule_.no_data is not NoData.KEEP:
                failing = rule_.no_data is NoData.FAILING
                status = rule_.impact[0].status if failing else None
        else:
            metrics = window_metrics(window)
            index = next((i for i, check in enumerate(checks) if check(metrics)), None)
            failing = index is not None
            status = rule_.impact[index].status if index is not None else None
        covered = any(
            m.start <= moment < m.end and component in m.components for m in scenario.maintenances
        )
        out.append(Verdict(moment, failing, status, covered))
    return out


def _matches(match: Match, result: ProbeResult) -> bool:
    return match.kind == result.kind and fnmatch.fnmatchcase(
        result.component, match.component or "*"
    )


class Deploys:
    """What the engine's calendar knows at a moment: the events at or before it."""

    def __init__(self, events: Sequence[Event]) -> None:
        self.deploys = [e for e in events if isinstance(e, Deploy)]
        known: set[str] = set()
        self.flagged: dict[str, float] = {}
        for event in events:
            if isinstance(event, Deploy):
                known.add(event.id)
                if event.bad:
                    self.flagged.setdefault(event.id, event.at)
            elif isinstance(event, DeployFlaggedBad) and event.id in known:
                self.flagged.setdefault(event.id, event.at)
        self.by_id = {d.id: d for d in self.deploys}

    def before(self, component: str, moment: float, window: float) -> Deploy | None:
        best: Deploy | None = None
        for deploy in self.deploys:
            if (
                component in deploy.components
                and 0 <= moment - deploy.at <= window
                and (best is None or deploy.at >= best.at)
            ):
                best = deploy
        return best

    def flagged_during(self, component: str, since: float, moment: float) -> Deploy | None:
        for deploy_id, flagged in self.flagged.items():
            if since <= flagged <= moment and component in self.by_id[deploy_id].components:
                return self.by_id[deploy_id]
        return None


Episode = tuple[str, str, float, float | None, str]


class RefSeries:
    """DESIGN.md timing semantics 1-8 for one (rule, component), step by step.

    `inhibitor_open(t)`: whether an incident of a rule this one names in `inhibited_by` is
    open at `t` (inhibitors are judged first, so one opening or resolving at `t` counts).
    """

    def __init__(
        self,
        rule_: Rule,
        component: str,
        deploys: Deploys,
        inhibitor_open: Callable[[float], bool] = lambda _: False,
    ) -> None:
        self.rule, self.component, self.deploys = rule_, component, deploys
        self.inhibitor_open = inhibitor_open
        self.inhibited = False
        self.failing_since: float | None = None
        self.deploy_cause: Deploy | None = None
        self.incident: RefIncident | None = None
        self.incidents: list[RefIncident] = []
        self.episodes: list[Episode] = []

    def step(self, verdict: Verdict) -> None:
        if self.incident is None and verdict.in_maintenance:
            self.end_episode(verdict.at, "maintenance")
        elif verdict.failing:
            self.on_failing(verdict.at, verdict.status or self.rule.impact[0].status)
        else:
            self.end_episode(verdict.at, None)
            self.on_stable(verdict.at)

    def on_failing(self, now: float, status: ComponentStatus) -> None:
        if self.failing_since is None:
            self.failing_since = now
            self.deploy_cause = self.deploys.before(self.component, now, self.rule.deploy_window)
        incident = self.incident
        if incident is not None:
            incident.monitoring, incident.stable_since = False, None
            if status.severity > incident.impact.severity:
                incident.impact = status
            return
        deploy = self.deploy_cause or self.deploys.flagged_during(
            self.component, self.failing_since, now
        )
        if deploy is None and now - self.failing_since < self.rule.open_after:
            return
        if self.inhibitor_open(now):
            self.inhibited = True
        else:
            self.inhibited = False
            cause = "deploy" if deploy else "sustained"
            deploy_id = deploy.id if deploy else None
            self.incident = RefIncident(
                self.rule.name, self.component, now, cause, deploy_id, status
            )
            self.incidents.append(self.incident)

    def on_stable(self, now: float) -> None:
        incident = self.incident
        if incident is None:
            return
        if not incident.monitoring:
            incident.monitoring, incident.stable_since = True, now
        elif incident.stable_since is not None and (
            now - incident.stable_since >= self.rule.resolve_after
        ):
            incident.resolved_at = now
            self.incident = None

    def end_episode(self, now: float, outcome: str | None) -> None:
        if self.failing_since is not None:
            outcome = outcome or self.outcome("too_short")
            self.episodes.append((self.rule.name, self.component, self.failing_since, now, outcome))
        self.failing_since, self.deploy_cause, self.inhibited = None, None, False

    def outcome(self, otherwise: str) -> str:
        return "incident" if self.incident else "inhibited" if self.inhibited else otherwise

    def finish(self) -> None:
        if self.failing_since is not None:
            outcome = self.outcome("pending")
            self.episodes.append(
                (self.rule.name, self.component, self.failing_since, None, outcome)
            )


def reference_run(
    scenario: Scenario, times: Sequence[float]
) -> tuple[list[RefIncident], list[Episode]]:
    """Every series at every evaluation time, each from its first result on; inhibitors
    (rules with no `inhibited_by`) first, so their incidents are known to the rest."""
    deploys = Deploys(scenario.events)
    incidents: list[RefIncident] = []
    episodes: list[Episode] = []
    components = sorted({r.component for r in scenario.results})

    def inhibitor_open(names: tuple[str, ...]) -> Callable[[float], bool]:
        return lambda moment: any(
            i.rule in names
            and i.opened_at <= moment
            and (i.resolved_at is None or moment < i.resolved_at)
            for i in incidents
        )

    for rule_ in sorted(scenario.rules, key=lambda r: bool(r.inhibited_by)):
        for component in components:
            series = RefSeries(rule_, component, deploys, inhibitor_open(rule_.inhibited_by))
            for verdict in verdicts(scenario, rule_, component, times):
                series.step(verdict)
            series.finish()
            incidents += series.incidents
            episodes += series.episodes
    return incidents, episodes


def report_rows(report: ReplayReport) -> tuple[list[tuple[object, ...]], list[Episode]]:
    incidents: list[tuple[object, ...]] = [
        (i.rule, i.component, i.opened_at, i.resolved_at, i.cause, i.deploy, str(i.impact))
        for i in report.incidents
    ]
    episodes = [
        (e.rule, e.component, e.started_at, e.ended_at, str(e.outcome)) for e in report.episodes
    ]
    return incidents, episodes


def _key(row: tuple[object, ...]) -> tuple[str, str, float]:
    return (str(row[0]), str(row[1]), float(row[2]))  # type: ignore[arg-type]
