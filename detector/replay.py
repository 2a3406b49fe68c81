"""Replay: the same engine over recorded events, evaluated at every result time and at every
timer deadline, so an incident opens exactly at `failing_since + open_after`."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from detector.engine import Engine
from detector.events import ResultLine
from detector.model import (
    Decision,
    Episode,
    EpisodeEnded,
    Event,
    Incident,
    IncidentOpened,
    ProbeResult,
    Rule,
    incident_to_dict,
)
from detector.timeutil import format_time


@dataclass
class ReplayReport:
    incidents: list[Incident] = field(default_factory=list)
    episodes: list[Episode] = field(default_factory=list)
    results: int = 0
    events: int = 0


class Replayer:
    """Drives an engine through a sorted event stream; `advance_to` stops at any time.

    Evaluation points are event times and engine deadlines only: looking at the state at
    some other time (a rule test's `at`) must not add an evaluation the replay would not do.
    """

    def __init__(
        self,
        rules: Sequence[Rule],
        events: Iterable[Event | ResultLine],
        component_names: Mapping[str, str] | None = None,
    ) -> None:
        self.engine = Engine(rules, component_names)
        self.report = ReplayReport()
        self._events: Iterator[Event | ResultLine] = iter(events)
        self._next: Event | ResultLine | None = next(self._events, None)
        self._incident_ids: set[str] = set()
        # Called after each evaluation with its time and decisions: tests trace evaluation
        # points through it (a compiled Engine's methods cannot be replaced).
        self.evaluated: Callable[[float, list[Decision]], None] | None = None

    def advance_to(self, until: float | None) -> None:
        """Process every event and deadline at or before `until` (None: all events)."""
        engine, events, report = self.engine, self._events, self.report
        observe = engine.observe
        while self._next is not None and (until is None or self._next.at <= until):
            moment = self._next.at
            self._deadlines_before(moment, inclusive=False)
            # The moment's events as one batch, then one evaluation: results (nearly every
            # event) go straight to `observe`, without feed's dispatch.
            event: Event | ResultLine | None = self._next
            while event is not None and event.at == moment:
                report.events += 1
                if type(event) is ResultLine or type(event) is ProbeResult:
                    observe(event)
                    report.results += 1
                elif not isinstance(event, ResultLine):  # (for mypy: it never is)
                    engine.feed(event)
                event = next(events, None)
            self._next = event
            self._collect(moment, engine.evaluate(moment))
        if until is not None:
            self._deadlines_before(until, inclusive=True)

    def finish(self) -> ReplayReport:
        self.report.episodes.extend(self.engine.running_episodes())
        self.report.episodes.sort(key=lambda e: (e.started_at, e.rule, e.component))
        return self.report

    def _deadlines_before(self, limit: float, *, inclusive: bool) -> None:
        engine = self.engine
        while True:
            deadline = engine.next_deadline()
            if deadline is None or deadline > limit or (deadline == limit and not inclusive):
                return
            self._collect(deadline, engine.evaluate(deadline))

    def _collect(self, now: float, decisions: list[Decision]) -> None:
        if self.evaluated is not None:
            self.evaluated(now, decisions)
        for decision in decisions:
            if isinstance(decision, IncidentOpened):
                if decision.incident.id not in self._incident_ids:
                    self._incident_ids.add(decision.incident.id)
                    self.report.incidents.append(decision.incident)
            elif isinstance(decision, EpisodeEnded):
                self.report.episodes.append(decision.episode)


def replay(
    rules: Sequence[Rule],
    events: Iterable[Event | ResultLine],
    *,
    until: float | None = None,
    component_names: Mapping[str, str] | None = None,
) -> ReplayReport:
    replayer = Replayer(rules, events, component_names)
    threshold = gc.get_threshold()
    # A replay allocates a few objects per result that die young, and keeps few: at the
    # default gen-0 threshold (700) the collector runs ~300 times a second for nothing.
    gc.set_threshold(100_000, *threshold[1:])
    try:
        replayer.advance_to(until)
    finally:
        gc.set_threshold(*threshold)
    return replayer.finish()


# ---------------------------------------------------------------------------------- output


def _time(moment: float | None) -> str | None:
    return None if moment is None else format_time(moment)


def episode_to_dict(episode: Episode) -> dict[str, Any]:
    return {
        "rule": episode.rule,
        "component": episode.component,
        "started_at": format_time(episode.started_at),
        "ended_at": _time(episode.ended_at),
        "outcome": episode.outcome,
    }


def report_to_dict(report: ReplayReport) -> dict[str, Any]:
    return {
        "incidents": [incident_to_dict(i) for i in report.incidents],
        "episodes": [episode_to_dict(e) for e in report.episodes],
    }


def report_to_table(report: ReplayReport) -> str:
    """A timeline for people: each incident with its updates, then the episode tally."""
    lines = [f"{report.results} results, {len(report.incidents)} incidents"]
    for incident in report.incidents:
        resolved = _time(incident.resolved_at) or "still open"
        lines.append("")
        lines.append(f"{incident.title}  [{incident.rule} on {incident.component}]")
        lines.append(
            f"  id {incident.id}  cause {incident.cause}"
            + (f" ({incident.deploy})" if incident.deploy else "")
            + f"  impact {incident.impact.words}"
            + f"  opened {format_time(incident.opened_at)}  resolved {resolved}"
        )
        for update in incident.updates:
            shown = "" if update.public else "(on-call only) "
            lines.append(
                f"  {format_time(update.at)}  {update.status:<13} "
                f"{update.component_status:<20} {shown}{update.body}"
            )
            if update.evidence:
                lines.append(f"  {'':<22}why: {update.evidence}")
    if report.episodes:
        lines.append("")
        lines.append("episodes:")
        for episode in report.episodes:
            lines.append(
                f"  {format_time(episode.started_at)} .. {_time(episode.ended_at) or 'running':<20}"
                f"  {episode.outcome:<11} {episode.rule} on {episode.component}"
            )
    return "\n".join(lines) + "\n"
