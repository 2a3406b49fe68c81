"""The engine's state machine, step by step, on a manual clock (milliseconds per test)."""

from __future__ import annotations

import pytest
from enginekit import MIN, T0, Driver, result, rule

from detector.engine import Engine
from detector.model import (
    ComponentStatus,
    Deploy,
    DeployFlaggedBad,
    EpisodeEnded,
    IncidentOpened,
    IncidentResolved,
    IncidentStatus,
    Maintenance,
    Match,
    NoData,
)


def episodes(driver: Driver) -> list[tuple[float, float | None, str]]:
    return [
        (
            (d.episode.started_at - T0) / MIN,
            ((d.episode.ended_at or 0) - T0) / MIN,
            d.episode.outcome,
        )
        for d in driver.decisions
        if isinstance(d, EpisodeEnded)
    ]


def test_a_blip_shorter_than_open_after_opens_nothing() -> None:
    driver = Driver(Engine([rule()]))
    driver.minutes(0, 5, ok=True)
    driver.minutes(5, 25, ok=False)
    driver.minutes(25, 60, ok=True)
    assert not any(isinstance(d, IncidentOpened) for d in driver.decisions)
    # failing from 5 (1 of 5 = 0.2 is not yet failing; 6 gives 2/5) until the window clears
    assert episodes(driver) == [(6.0, 28.0, "too_short")]


def test_opens_exactly_at_failing_since_plus_open_after() -> None:
    driver = Driver(Engine([rule()]))
    driver.minutes(0, 60, ok=False)
    opened = [d for d in driver.decisions if isinstance(d, IncidentOpened)]
    assert len(opened) == 1
    incident = opened[0].incident
    assert incident.opened_at == T0 + 30 * MIN
    assert incident.status is IncidentStatus.INVESTIGATING
    assert incident.component_status is ComponentStatus.MAJOR_OUTAGE
    assert incident.cause == "sustained"
    assert incident.title == "dhl: label creation failing (DE)"
    opening = incident.updates[0]
    assert opening.body == "We are investigating problems creating labels with dhl in Germany."
    assert opening.evidence == "error_ratio (1) >= 0.9; seen from 1 of 1 instances"
    assert opening.public and incident.started_at == T0


def test_deadline_between_results_is_a_timer() -> None:
    """Results every 7 minutes: the open happens at the deadline, not at the next result."""
    engine = Engine([rule(window=10 * MIN)])
    driver = Driver(engine)
    for minute in range(0, 50, 7):
        driver.run_until_before(minute)
        engine.observe(result(minute, ok=False))
        driver.evaluate(driver.at(minute))
    assert driver.only_incident().opened_at == T0 + 30 * MIN


def test_one_ok_evaluation_before_open_after_ends_the_episode() -> None:
    driver = Driver(Engine([rule(window=1 * MIN)]))
    driver.minutes(0, 29, ok=False)
    driver.minutes(29, 30, ok=True)
    driver.minutes(30, 58, ok=False)
    opened = [d.incident for d in driver.decisions if isinstance(d, IncidentOpened)]
    assert [i.opened_at for i in opened] == [T0 + 60 * MIN] or not opened
    assert episodes(driver)[0] == (0.0, 29.0, "too_short")


def test_relapse_during_monitoring_returns_the_same_incident_to_investigating() -> None:
    driver = Driver(Engine([rule(window=1 * MIN)]))
    driver.minutes(0, 35, ok=False)
    incident = driver.only_incident()
    driver.minutes(35, 40, ok=True)
    assert incident.status is IncidentStatus.MONITORING
    driver.minutes(40, 42, ok=False)
    assert driver.only_incident() is incident
    assert incident.status is IncidentStatus.INVESTIGATING
    driver.minutes(42, 51, ok=True)
    assert incident.status is IncidentStatus.MONITORING  # stable since 42: 9 minutes
    driver.minutes(51, 53, ok=True)
    assert incident.status is IncidentStatus.RESOLVED
    assert incident.resolved_at == T0 + 52 * MIN
    statuses = [u.status.value for u in incident.updates]
    assert statuses == ["investigating", "monitoring", "investigating", "monitoring", "resolved"]
    assert engine_statuses(driver)["carriers/dhl"] is ComponentStatus.OPERATIONAL


def engine_statuses(driver: Driver) -> dict[str, ComponentStatus]:
    return driver.engine.component_statuses(driver.now)


def test_resolves_after_resolve_after_of_stability_even_without_results() -> None:
    driver = Driver(Engine([rule(window=1 * MIN)]))
    driver.minutes(0, 31, ok=False)
    driver.minutes(31, 32, ok=True)  # monitoring from 31
    driver.run_until(45)  # no more results: no_data keep holds "not failing"
    resolved = [d for d in driver.decisions if isinstance(d, IncidentResolved)]
    assert [d.incident.resolved_at for d in resolved] == [T0 + 41 * MIN]


def test_impact_changes_are_updates() -> None:
    driver = Driver(Engine([rule()]))
    driver.minutes(0, 35, ok=False)
    driver.minutes(35, 37, ok=True)  # 3 of 5 failing: partial
    incident = driver.only_incident()
    assert incident.component_status is ComponentStatus.PARTIAL_OUTAGE
    assert incident.impact is ComponentStatus.MAJOR_OUTAGE  # worst seen is kept
    # Less impact while the fix settles: recorded for on-call, not a public update.
    assert incident.updates[-1].evidence.startswith("error_ratio (0.8) >= 0.3")
    assert incident.updates[-1].public is False


def test_deploy_window_opens_at_once_naming_the_deploy() -> None:
    engine = Engine([rule()])
    driver = Driver(engine)
    engine.add_deploy(Deploy(T0 + 2 * MIN, "d-17", "label-api", "v2", ("carriers/dhl",)))
    driver.minutes(0, 5, ok=True)
    driver.minutes(5, 8, ok=False)
    incident = driver.only_incident()
    assert incident.opened_at == T0 + 6 * MIN
    assert (incident.cause, incident.deploy) == ("deploy", "d-17")
    opening = incident.updates[0]
    assert incident.status is IncidentStatus.IDENTIFIED
    assert opening.body.startswith("A recent change on our side caused problems creating labels")
    assert "d-17" not in opening.body
    assert "deploy d-17 (label-api v2" in opening.evidence


def test_deploy_older_than_deploy_window_or_other_component_does_not_count() -> None:
    engine = Engine([rule()])
    driver = Driver(engine)
    engine.add_deploy(Deploy(T0 - 20 * MIN, "d-old", "label-api", "v1", ("carriers/dhl",)))
    engine.add_deploy(Deploy(T0 + 1 * MIN, "d-ups", "label-api", "v1", ("carriers/ups",)))
    driver.minutes(0, 10, ok=False)
    assert engine.open_incidents() == []


def test_deploy_flagged_bad_while_failing_opens_at_once() -> None:
    engine = Engine([rule()])
    driver = Driver(engine)
    engine.add_deploy(Deploy(T0 - 60 * MIN, "d-9", "label-api", "v9", ("carriers/dhl",)))
    driver.minutes(0, 10, ok=False)
    assert engine.open_incidents() == []
    engine.flag_deploy_bad(DeployFlaggedBad(T0 + 10 * MIN, "d-9"))
    driver.evaluate(driver.at(10))
    incident = driver.only_incident()
    assert (incident.opened_at, incident.cause, incident.deploy) == (T0 + 600, "deploy", "d-9")


def test_maintenance_suppresses_and_clock_restarts_at_its_end() -> None:
    engine = Engine([rule()])
    driver = Driver(engine)
    engine.add_maintenance(
        Maintenance(T0 + 10 * MIN, T0 + 40 * MIN, ("carriers/dhl",), "DHL maintenance", "m1")
    )
    driver.minutes(0, 80, ok=False)
    assert episodes(driver)[0] == (0.0, 10.0, "maintenance")
    assert driver.only_incident().opened_at == T0 + 70 * MIN  # 40 + 30


def test_maintenance_shows_under_maintenance_and_open_incident_still_resolves() -> None:
    engine = Engine([rule(window=1 * MIN)])
    driver = Driver(engine)
    driver.minutes(0, 31, ok=False)
    incident = driver.only_incident()
    engine.add_maintenance(Maintenance(T0 + 31 * MIN, T0 + 90 * MIN, ("carriers/dhl",), "", "m"))
    driver.minutes(31, 33, ok=False)
    assert engine_statuses(driver)["carriers/dhl"] is ComponentStatus.UNDER_MAINTENANCE
    driver.minutes(33, 45, ok=True)
    assert incident.status is IncidentStatus.RESOLVED


def test_inhibited_rule_opens_nothing_while_inhibitor_is_open() -> None:
    api = rule("platform-api", match=Match(kind="http", component="sendcloud/api"), inhibited_by=())
    labels = rule("labels", inhibited_by=("platform-api",))
    engine = Engine([labels, api])
    driver = Driver(engine)
    for minute in range(0, 60):
        driver.run_until_before(minute)
        engine.observe(result(minute, ok=False, kind="http", component="sendcloud/api"))
        engine.observe(result(minute, ok=minute >= 45))
        driver.evaluate(driver.at(minute))
        if minute == 44:
            running = {(e.rule, e.outcome) for e in engine.running_episodes()}
            assert running == {("platform-api", "incident"), ("labels", "inhibited")}
    assert [i.rule for i in engine.open_incidents()] == ["platform-api"]
    assert episodes(driver) == [(0.0, 48.0, "inhibited")]


def test_inhibited_episode_opens_when_the_inhibitor_resolves_and_it_still_fails() -> None:
    api = rule("platform-api", match=Match(kind="http", component="sendcloud/api"), window=MIN)
    labels = rule("labels", inhibited_by=("platform-api",))
    engine = Engine([labels, api])
    driver = Driver(engine)
    for minute in range(0, 70):
        driver.run_until_before(minute)
        engine.observe(result(minute, ok=minute >= 35, kind="http", component="sendcloud/api"))
        engine.observe(result(minute, ok=False))
        driver.evaluate(driver.at(minute))
    label_incidents = [i for i in engine.open_incidents() if i.rule == "labels"]
    # api monitoring from 35, resolved at 45: the still-failing carrier opens then.
    assert [i.opened_at for i in label_incidents] == [T0 + 45 * MIN]


@pytest.mark.parametrize(
    ("mode", "expect_open"),
    [(NoData.KEEP, True), (NoData.FAILING, True), (NoData.OK, False)],
)
def test_no_data_modes(mode: NoData, expect_open: bool) -> None:
    engine = Engine([rule(no_data=mode, min_results=3)])
    driver = Driver(engine)
    driver.minutes(0, 10, ok=False)  # failing since minute 2 (3 results)
    driver.run_until(60)  # the probe goes silent
    driver.evaluate(driver.at(60))
    opened = [d.incident for d in driver.decisions if isinstance(d, IncidentOpened)]
    assert bool(opened) is expect_open
    if mode is NoData.KEEP:
        assert opened[0].opened_at == T0 + 32 * MIN
    if mode is NoData.FAILING:
        assert opened[0].component_status is ComponentStatus.MAJOR_OUTAGE


def test_no_data_failing_starts_an_episode_on_silence() -> None:
    engine = Engine([rule(no_data=NoData.FAILING, window=5 * MIN)])
    driver = Driver(engine)
    driver.minutes(0, 3, ok=True)
    driver.evaluate(driver.at(8))  # window (3, 8] is empty
    assert engine.running_episodes()[0].started_at == T0 + 8 * MIN


def test_latency_impact_is_degraded_performance() -> None:
    driver = Driver(Engine([rule()]))
    driver.minutes(0, 40, ok=True, latency=7.5)
    incident = driver.only_incident()
    assert incident.component_status is ComponentStatus.DEGRADED_PERFORMANCE
    assert "latency_p95 (7.5s) > 5s" in incident.updates[0].evidence


def test_manual_resolve_while_still_failing_restarts_the_clock() -> None:
    engine = Engine([rule()])
    driver = Driver(engine)
    driver.minutes(0, 31, ok=False)
    incident = driver.only_incident()
    engine.manual_update(incident.id, IncidentStatus.RESOLVED, "fixed by hand", driver.at(31))
    driver.minutes(31, 62, ok=False)
    assert driver.only_incident().opened_at == T0 + 61 * MIN
    assert incident.updates[-1].body == "fixed by hand"


def test_manual_identified_then_engine_moves_to_monitoring() -> None:
    engine = Engine([rule(window=MIN)])
    driver = Driver(engine)
    driver.minutes(0, 31, ok=False)
    incident = driver.only_incident()
    engine.manual_update(incident.id, IncidentStatus.IDENTIFIED, "DHL API down", driver.at(31))
    driver.minutes(31, 33, ok=True)
    assert incident.status is IncidentStatus.MONITORING
    with pytest.raises(KeyError):
        engine.manual_update("nope", IncidentStatus.RESOLVED, "x", driver.at(33))


def test_reload_keeps_state_by_rule_name_and_orphans_incidents_of_removed_rules() -> None:
    engine = Engine([rule("labels"), rule("other", match=Match(kind="label_creation"))])
    driver = Driver(engine)
    driver.minutes(0, 20, ok=False)
    engine.set_rules([rule("labels", open_after=40 * MIN), rule("other")])
    driver.minutes(20, 45, ok=False)
    opened = {
        d.incident.rule: d.incident.opened_at
        for d in driver.decisions
        if isinstance(d, IncidentOpened)
    }
    assert opened == {"other": T0 + 30 * MIN, "labels": T0 + 40 * MIN}
    engine.set_rules([rule("labels", open_after=40 * MIN)])
    assert not [d for d in driver.evaluate(driver.at(45)) if isinstance(d, IncidentResolved)]
    assert sorted(i.rule for i in engine.open_incidents()) == ["labels", "other"]
    assert [i.rule for i in engine.orphans()] == ["other"]


def test_components_without_incidents_are_operational() -> None:
    engine = Engine([rule()])
    driver = Driver(engine)
    driver.minutes(0, 10, ok=False)
    statuses = engine.component_statuses(driver.now, ["carriers/ups"])
    assert statuses == {
        "carriers/ups": ComponentStatus.OPERATIONAL,
        "carriers/dhl": ComponentStatus.OPERATIONAL,
    }
    assert engine.failure_durations(driver.now) == {("labels", "carriers/dhl"): 9 * MIN}


def test_a_restored_failure_waits_for_a_fresh_result_before_opening() -> None:
    from detector.engine.state import dump_state, load_state

    engine = Engine([rule()])
    driver = Driver(engine)
    driver.minutes(0, 20, ok=False)  # failing since minute 0
    state = dump_state(engine)
    restored = load_state([rule()], state, restored_at=driver.at(60))
    assert restored.evaluate(driver.at(60)) == []  # past the deadline, but no fresh evidence
    restored.observe(result(60, ok=True))
    decisions = restored.evaluate(driver.at(60))
    assert [type(d).__name__ for d in decisions] == ["EpisodeEnded"]
    assert restored.open_incidents() == []

    again = load_state([rule()], state, restored_at=driver.at(40))
    again.observe(result(40, ok=False))
    [opened] = [d for d in again.evaluate(driver.at(40)) if isinstance(d, IncidentOpened)]
    assert opened.incident.opened_at == T0 + 40 * MIN  # the original clock: 40 >= 0 + 30


def test_reload_that_narrows_a_match_drops_the_components_it_no_longer_watches() -> None:
    engine = Engine([rule()])
    driver = Driver(engine)
    driver.minutes(0, 31, ok=False)
    assert len(engine.open_incidents()) == 1
    narrowed = rule(match=Match(kind="label_creation", component="carriers/ups"))
    engine.set_rules([narrowed])
    assert driver.evaluate(driver.at(31)) == []
    assert engine.series == {}
    assert len(engine.orphans()) == 1  # still open: a reload never resolves it publicly


def test_a_silent_probe_is_noticed_when_its_last_result_leaves_the_window() -> None:
    """The window emptying is an evaluation point: `no_data: failing` needs no new result."""
    engine = Engine([rule(no_data=NoData.FAILING)])
    engine.observe(result(0, ok=True))
    engine.evaluate(T0)
    assert engine.next_deadline() == T0 + 5 * MIN
    engine.evaluate(T0 + 5 * MIN)
    assert engine.running_episodes()[0].started_at == T0 + 5 * MIN


def test_an_incident_opened_on_an_empty_window_shows_the_last_data_seen() -> None:
    engine = Engine([rule()])
    driver = Driver(engine)
    driver.minutes(0, 10, ok=False)
    driver.run_until(31)  # silent since minute 10: no_data keep holds the failure
    incident = driver.only_incident()
    # the window drained one result at a time; the last one it held had failed
    assert incident.updates[0].evidence.startswith("error_ratio (1) >= 0.9")
