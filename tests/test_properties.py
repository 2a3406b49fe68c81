"""Property tests: random result streams through replay, checked against a brute-force reference.

Streams are random runs of ok / failing / silent stretches from a few probes on two carriers
and two markets, at uneven intervals, with optional deploys, bad-deploy flags and a
maintenance window, judged by one or two rules whose timings are drawn from small sets.

The reference (`reference_run`) knows nothing of the engine's incremental machinery: at every
evaluation time it recomputes each rule's window `(t - window, t]` from the raw results and
runs the DESIGN.md "Timing semantics" state machine for every (rule, component), every series
at every evaluation time. The evaluation times themselves are recorded from the engine (the
Replayer decides them) and checked separately: every event time is one, and every open and
resolve happens exactly on its deadline, which is only possible if the deadlines are ones.
Inhibition (semantics 7) has its own scenarios: an API rule that inhibits the carrier rule.

Nothing is restricted away: maintenance, all three `no_data` modes, deploys and flags are in
the streams the exact open/resolve properties (b) and (c) run on. `keep` is modelled as the
previous verdict carried through a window with too few results, maintenance as "no episode
runs while covered and no incident is open".
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from enginekit import MIN, T0, rule
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference import CONDITIONS, Scenario, _key, reference_run, report_rows, verdicts

from detector.engine.when import parse_when
from detector.events import iter_events, write_events
from detector.model import (
    ComponentStatus,
    Decision,
    Deploy,
    DeployFlaggedBad,
    Event,
    Impact,
    IncidentOpened,
    IncidentResolved,
    Maintenance,
    Match,
    NoData,
    ProbeResult,
    Rule,
)
from detector.replay import Replayer, ReplayReport, replay, report_to_dict

COMPONENTS = ("carriers/dhl", "carriers/ups")
MARKETS = ("DE", "NL")
STATUSES = (ComponentStatus.MAJOR_OUTAGE, ComponentStatus.PARTIAL_OUTAGE)
PROPERTY_SETTINGS = settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

SeriesKey = tuple[str, str]


SECONDS = st.sampled_from([30.0, 60.0, 60.0, 60.0, 120.0, 420.0])
RUN = st.tuples(
    st.sampled_from([True, False, False, None]),  # ok, failing, silent
    st.integers(1, 35),
    SECONDS,
    st.sampled_from([0.2, 0.2, 0.2, 7.0]),
)


@st.composite
def rules_strategy(draw: st.DrawFn, name: str, component: str) -> tuple[Rule, list[Callable]]:
    texts = draw(st.lists(st.sampled_from(sorted(CONDITIONS)), min_size=1, max_size=2, unique=True))
    impact = tuple(
        Impact(status, parse_when(text)) for status, text in zip(STATUSES, texts, strict=False)
    )
    built = rule(
        name,
        match=Match(kind="label_creation", component=component),
        impact=impact,
        window=draw(st.sampled_from([1 * MIN, 5 * MIN])),
        min_results=draw(st.sampled_from([1, 2])),
        open_after=draw(st.sampled_from([2 * MIN, 5 * MIN, 30 * MIN])),
        resolve_after=draw(st.sampled_from([1 * MIN, 3 * MIN, 10 * MIN])),
        deploy_window=draw(st.sampled_from([5 * MIN, 15 * MIN])),
        no_data=draw(st.sampled_from(list(NoData))),
    )
    return built, [CONDITIONS[text] for text in texts]


@st.composite
def result_streams(draw: st.DrawFn, components: Sequence[str], kind: str) -> list[ProbeResult]:
    probes = draw(
        st.lists(
            st.tuples(st.sampled_from(components), st.sampled_from(MARKETS)),
            min_size=1,
            max_size=3,
            unique=True,
        )
    )
    results: list[ProbeResult] = []
    for index, (component, market) in enumerate(probes):
        moment = T0 + draw(st.sampled_from([0.0, 30.0, 60.0]))
        for ok, count, gap, latency in draw(st.lists(RUN, min_size=1, max_size=5)):
            for _ in range(count):
                if ok is not None:
                    results.append(
                        ProbeResult(
                            at=moment,
                            probe=f"probe-{index}",
                            kind=kind,
                            component=component,
                            ok=ok,
                            latency_s=latency,
                            error=None if ok else "HTTP 503",
                            labels={"market": market},
                        )
                    )
                moment += gap
    return results


@st.composite
def calendar_events(draw: st.DrawFn, span_minutes: int, maintenance: bool) -> list[Event]:
    """Deploys (unique ids), flags (maybe of unknown ids) and at most one maintenance."""
    components = st.lists(st.sampled_from(COMPONENTS), min_size=1, max_size=2, unique=True)
    minute = st.integers(0, max(span_minutes, 1))
    events: list[Event] = []
    for index in range(draw(st.integers(0, 3))):
        events.append(
            Deploy(
                at=T0 + draw(minute) * MIN,
                id=f"d-{index}",
                service="label-api",
                version=f"v{index}",
                components=tuple(draw(components)),
                bad=draw(st.booleans()),
            )
        )
    for _ in range(draw(st.integers(0, 2))):
        target = draw(st.sampled_from(["d-0", "d-1", "d-2", "d-unknown"]))
        events.append(DeployFlaggedBad(at=T0 + draw(minute) * MIN, id=target))
    if maintenance and draw(st.booleans()):
        start = T0 + draw(minute) * MIN
        length = draw(st.sampled_from([5, 20, 45])) * MIN
        events.append(Maintenance(start, start + length, tuple(draw(components)), "work", "m-1"))
    return events


def merge(*streams: Sequence[Event]) -> list[Event]:
    merged = [event for stream in streams for event in stream]
    merged.sort(key=lambda e: e.at)  # stable: equal times keep stream order
    return merged


@st.composite
def scenarios(draw: st.DrawFn, *, maintenance: bool = True) -> Scenario:
    first, first_checks = draw(rules_strategy("r1", "carriers/*"))
    rules, checks = [first], {"r1": first_checks}
    if draw(st.booleans()):
        second, second_checks = draw(rules_strategy("r2", "carriers/dhl"))
        rules.append(second)
        checks["r2"] = second_checks
    results = draw(result_streams(COMPONENTS, "label_creation"))
    span = int((max(r.at for r in results) - T0) // MIN) if results else 60
    return Scenario(rules, checks, merge(results, draw(calendar_events(span, maintenance))))


# ------------------------------------------------------------------ tracing the engine


@dataclass
class Trace:
    times: list[float] = field(default_factory=list)  # every evaluation, in order
    decisions: list[tuple[float, Decision]] = field(default_factory=list)


def traced_replay(rules: Sequence[Rule], events: Sequence[Event]) -> tuple[ReplayReport, Trace]:
    """Replay while recording evaluation times and asserting, after every evaluation, that no
    (rule, component) ever has two unresolved incidents (property a)."""
    replayer = Replayer(rules, events)
    engine = replayer.engine
    trace = Trace()
    open_keys: set[SeriesKey] = set()

    def recording(now: float, decisions: list[Decision]) -> None:
        trace.times.append(now)
        for decision in decisions:
            trace.decisions.append((now, decision))
            if isinstance(decision, IncidentOpened):
                key = (decision.incident.rule, decision.incident.component)
                assert key not in open_keys, f"second unresolved incident for {key} at {now}"
                open_keys.add(key)
            elif isinstance(decision, IncidentResolved):
                key = (decision.incident.rule, decision.incident.component)
                assert key in open_keys, f"resolved {key} at {now} that was not open"
                open_keys.discard(key)
        keys = [(i.rule, i.component) for i in engine.open_incidents()]
        assert len(keys) == len(set(keys)) and set(keys) == open_keys

    replayer.evaluated = recording
    replayer.advance_to(None)
    return replayer.finish(), trace


# ------------------------------------------------------------------ properties


def check_evaluation_times(scenario: Scenario, trace: Trace) -> None:
    assert trace.times == sorted(set(trace.times)), "evaluations must be strictly increasing"
    assert {e.at for e in scenario.events} <= set(trace.times), "every event time is evaluated"


def check_open_after(scenario: Scenario, report: ReplayReport, trace: Trace) -> None:
    """(b) A sustained incident opens exactly `open_after` after the first failing evaluation
    of an unbroken failing stretch. Maintenance is included: an evaluation under maintenance
    is no part of an episode, so the stretch must be clear of it. `keep` carries a verdict
    through a window without enough results, as the reference does."""
    rules = {r.name: r for r in scenario.rules}
    for incident in report.incidents:
        if incident.cause != "sustained":
            continue
        rule_ = rules[incident.rule]
        seen = verdicts(scenario, rule_, incident.component, trace.times)
        start = incident.opened_at - rule_.open_after
        stretch = [v for v in seen if start <= v.at <= incident.opened_at]
        assert stretch and stretch[0].at == start, "opens exactly at failing_since + open_after"
        assert all(v.failing and not v.in_maintenance for v in stretch), stretch
        before = [v for v in seen if v.at < start]
        assert not before or not before[-1].failing or before[-1].in_maintenance, before[-1]


def check_resolve_after(scenario: Scenario, report: ReplayReport, trace: Trace) -> None:
    """(c) A resolve comes exactly `resolve_after` after the first non-failing evaluation, with
    no failing one since. Maintenance does not matter: an open incident still resolves."""
    rules = {r.name: r for r in scenario.rules}
    for incident in report.incidents:
        if incident.resolved_at is None:
            continue
        rule_ = rules[incident.rule]
        seen = verdicts(scenario, rule_, incident.component, trace.times)
        start = incident.resolved_at - rule_.resolve_after
        stretch = [v for v in seen if start <= v.at <= incident.resolved_at]
        assert stretch and stretch[0].at == start, "resolves at stable_since + resolve_after"
        assert not any(v.failing for v in stretch), stretch
        before = [v for v in seen if v.at < start]
        assert before and before[-1].failing, "monitoring starts at the first non-failing one"


def check_reference(scenario: Scenario, report: ReplayReport, trace: Trace) -> None:
    """Incidents (times, cause, deploy, impact) and episodes (times, outcome) are exactly those
    of the brute-force reference."""
    ref_incidents, ref_episodes = reference_run(scenario, trace.times)
    incidents, episodes = report_rows(report)
    assert sorted(incidents, key=_key) == sorted((i.row() for i in ref_incidents), key=_key)
    assert sorted(episodes, key=_key) == sorted(ref_episodes, key=_key)


@settings(PROPERTY_SETTINGS, max_examples=150)
@given(scenarios())
def test_replay_keeps_the_timing_semantics(scenario: Scenario) -> None:
    """(a) is asserted after every evaluation inside `traced_replay`; (b), (c) and the
    reference on the finished report."""
    report, trace = traced_replay(scenario.rules, scenario.events)
    check_evaluation_times(scenario, trace)
    check_open_after(scenario, report, trace)
    check_resolve_after(scenario, report, trace)
    check_reference(scenario, report, trace)


@settings(PROPERTY_SETTINGS, max_examples=60)
@given(scenarios())
def test_replay_is_deterministic_and_survives_the_events_file(scenario: Scenario) -> None:
    """(d) Twice the same report, ids included; the same through write/read of the events
    file; the same when a rule test looks at the state at times in between."""
    first = report_to_dict(replay(scenario.rules, scenario.events))
    assert report_to_dict(replay(scenario.rules, scenario.events)) == first

    buffer = io.BytesIO()
    write_events(scenario.events, buffer)
    reread = list(iter_events(buffer.getvalue().splitlines(), "memory"))
    assert reread == scenario.events
    assert report_to_dict(replay(scenario.rules, reread)) == first

    last = scenario.events[-1].at if scenario.events else T0
    replayer = Replayer(scenario.rules, scenario.events)
    for moment in range(int(T0), int(last), 450):  # every 7.5 minutes, off the minute grid
        replayer.advance_to(float(moment))
    replayer.advance_to(None)
    assert report_to_dict(replayer.finish()) == first


@st.composite
def inhibited_scenarios(draw: st.DrawFn) -> Scenario:
    api = rule(
        "platform-api",
        match=Match(kind="http", component="sendcloud/api"),
        impact=(Impact(ComponentStatus.MAJOR_OUTAGE, parse_when("error_ratio >= 0.5")),),
        window=draw(st.sampled_from([1 * MIN, 5 * MIN])),
        open_after=draw(st.sampled_from([2 * MIN, 5 * MIN, 30 * MIN])),
        resolve_after=draw(st.sampled_from([1 * MIN, 3 * MIN, 10 * MIN])),
    )
    carriers, checks = draw(rules_strategy("r1", "carriers/*"))
    carriers = replace(carriers, inhibited_by=("platform-api",))
    api_results = draw(result_streams(["sendcloud/api"], "http"))
    carrier_results = draw(result_streams(COMPONENTS, "label_creation"))
    deploys = draw(calendar_events(60, maintenance=False))
    return Scenario(
        [carriers, api],
        {"r1": checks, "platform-api": [CONDITIONS["error_ratio >= 0.5"]]},
        merge(api_results, carrier_results, deploys),
    )


@PROPERTY_SETTINGS
@given(inhibited_scenarios())
def test_inhibition_holds_and_agrees_with_the_reference(scenario: Scenario) -> None:
    """Semantics 7: no new incident of the inhibited rule while the inhibitor has one open,
    inhibited episodes open when it resolves; (a) is checked throughout."""
    report, trace = traced_replay(scenario.rules, scenario.events)
    open_api = 0
    for _, decision in trace.decisions:
        if isinstance(decision, IncidentOpened):
            if decision.incident.rule == "platform-api":
                open_api += 1
            else:
                assert open_api == 0, f"{decision.incident.component} opened under inhibition"
        elif isinstance(decision, IncidentResolved) and decision.incident.rule == "platform-api":
            open_api -= 1
    check_reference(scenario, report, trace)
