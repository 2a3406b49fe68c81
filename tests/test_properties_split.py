"""Property tests for split series and several instances (DESIGN "Markets and vantage
points"): random streams from two markets seen by up to three instances, some suspect.

Checked on every stream: never two unresolved incidents per (rule, component); every
sustained opening is preceded by at least `open_after` of evaluations at which one series
was failing by quorum, recomputed by brute force from the raw results; replay is
deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence

from enginekit import MIN, T0, rule
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detector.engine.when import parse_when
from detector.model import (
    ComponentStatus,
    Decision,
    Impact,
    IncidentOpened,
    IncidentResolved,
    ProbeResult,
    Quorum,
    Rule,
    quorum_needed,
)
from detector.replay import Replayer, report_to_dict

MARKETS = ("DE", "NL")
INSTANCES = ("a", "b", "c")


class Scenario:
    # Not a dataclass: hypothesis pretty-prints dataclasses field by field (60 kB here).
    def __init__(self, rule: Rule, results: list[ProbeResult]) -> None:
        self.rule, self.results = rule, results

    def __repr__(self) -> str:
        # A falsifying example must stay readable (and hypothesis warns on huge reprs).
        marks = "".join("." if r.ok else "x" for r in self.results)
        return (
            f"Scenario(split_by={self.rule.split_by}, quorum={self.rule.quorum!r}, "
            f"{len(self.results)} results: {marks[:200]})"
        )


@st.composite
def stretches(draw: st.DrawFn, minutes: int) -> list[str]:
    """Per minute: 'ok', 'fail' or 'gap', in runs."""
    out: list[str] = []
    while len(out) < minutes:
        state = draw(st.sampled_from(["ok", "fail", "fail", "gap"]))
        out.extend([state] * draw(st.integers(1, 15)))
    return out[:minutes]


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    quorum: Quorum = draw(st.sampled_from(["majority", "any", "all", 2]))
    the_rule = rule(
        impact=(Impact(ComponentStatus.MAJOR_OUTAGE, parse_when("error_ratio >= 0.5")),),
        split_by=("market",),
        quorum=quorum,
        window=draw(st.sampled_from([3 * MIN, 5 * MIN])),
        open_after=draw(st.sampled_from([5 * MIN, 10 * MIN])),
        resolve_after=draw(st.sampled_from([3 * MIN, 5 * MIN])),
    )
    minutes = 60
    instances = INSTANCES[: draw(st.integers(1, 3))]
    results = []
    for index, instance in enumerate(instances):
        suspect = draw(stretches(minutes)) if draw(st.booleans()) else ["ok"] * minutes
        for market in MARKETS:
            for minute, state in enumerate(draw(stretches(minutes))):
                if state == "gap":
                    continue
                results.append(
                    ProbeResult(
                        at=T0 + minute * MIN + index * 7,
                        probe=f"dhl-{market}",
                        kind="label_creation",
                        component="carriers/dhl",
                        ok=state == "ok",
                        labels={"market": market},
                        instance=instance,
                        suspect=suspect[minute] == "fail",
                    )
                )
    results.sort(key=lambda r: r.at)
    return Scenario(the_rule, results)


def traced(scenario: Scenario) -> tuple[list[float], list[Decision], Replayer]:
    replayer = Replayer([scenario.rule], scenario.results)
    times: list[float] = []
    decisions: list[Decision] = []

    def recording(now: float, out: list[Decision]) -> None:
        times.append(now)
        decisions.extend(out)

    replayer.evaluated = recording
    replayer.advance_to(None)
    return times, decisions, replayer


def failing_by_quorum(scenario: Scenario, market: str, times: Sequence[float]) -> list[bool]:
    """The brute-force verdict of one series at each evaluation time (no_data: keep)."""
    the_rule = scenario.rule
    verdicts = []
    previous = False
    for now in times:
        per_instance: dict[str, list[bool]] = {}
        for result in scenario.results:
            inside = now - the_rule.window < result.at <= now
            if inside and not result.suspect and result.labels["market"] == market:
                per_instance.setdefault(result.instance, []).append(result.ok)
        if per_instance:
            failing = sum(1 for oks in per_instance.values() if oks.count(False) / len(oks) >= 0.5)
            previous = failing >= quorum_needed(the_rule.quorum, len(per_instance))
        verdicts.append(previous)
    return verdicts


PROPERTY = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(scenarios())
def test_split_series_keep_one_incident_and_the_open_after_clock(scenario: Scenario) -> None:
    times, decisions, _ = traced(scenario)
    unresolved: set[tuple[str, str]] = set()
    verdicts = {market: failing_by_quorum(scenario, market, times) for market in MARKETS}
    for decision in decisions:
        if isinstance(decision, IncidentOpened):
            incident = decision.incident
            key = (incident.rule, incident.component)
            assert key not in unresolved, "two unresolved incidents for one (rule, component)"
            unresolved.add(key)
            assert incident.cause == "sustained"
            opened = incident.opened_at
            start = opened - scenario.rule.open_after
            # Some market failed at every evaluation from before `start` up to the opening.
            window = [i for i, t in enumerate(times) if t <= opened]
            first = max((i for i in window if times[i] <= start), default=None)
            assert first is not None, "opened before open_after could have passed"
            assert any(
                all(verdicts[market][i] for i in window if i >= first) for market in MARKETS
            ), f"no market failed by quorum for open_after before {opened}"
            assert set(incident.markets) <= set(MARKETS)
        elif isinstance(decision, IncidentResolved):
            unresolved.discard((decision.incident.rule, decision.incident.component))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_split_replay_is_deterministic(scenario: Scenario) -> None:
    first = Replayer([scenario.rule], scenario.results)
    first.advance_to(None)
    second = Replayer([scenario.rule], list(reversed(list(reversed(scenario.results)))))
    second.advance_to(None)
    assert report_to_dict(first.finish()) == report_to_dict(second.finish())


def test_the_generator_covers_openings() -> None:
    """A fixed stream where both markets fail everywhere opens exactly once."""
    results = [
        ProbeResult(T0 + m * MIN + i, "p", "label_creation", "carriers/dhl", False,
                    labels={"market": market}, instance=instance)
        for m in range(40) for market in MARKETS for i, instance in enumerate(INSTANCES)
    ]  # fmt: skip
    scenario = Scenario(rule(split_by=("market",)), results)
    _, decisions, _ = traced(scenario)
    assert len([d for d in decisions if isinstance(d, IncidentOpened)]) == 1
