"""split_by: one series per market, one incident per (rule, component) (DESIGN "Markets and
vantage points"), on a manual clock."""

from __future__ import annotations

from enginekit import MIN, T0, Driver, result, rule

from detector.engine import Engine
from detector.engine.state import dump_state, load_state
from detector.model import (
    ComponentStatus,
    Deploy,
    DeployFlaggedBad,
    IncidentOpened,
    IncidentResolved,
    IncidentStatus,
    IncidentUpdated,
    Maintenance,
    Match,
    NoData,
)

SPLIT = rule(split_by=("market",))


def minutes(driver: Driver, start: int, stop: int, **markets: bool | None) -> None:
    """A result a minute per market (`DE=False` fails, `NL=None` is silent), evaluated."""
    for minute in range(start, stop):
        driver.run_until_before(minute)
        for market, ok in markets.items():
            if ok is not None:
                driver.engine.observe(result(minute, ok, market=market, probe=f"dhl-{market}"))
        driver.evaluate(driver.at(minute))


def opened(driver: Driver) -> list[IncidentOpened]:
    return [d for d in driver.decisions if isinstance(d, IncidentOpened)]


def updates(driver: Driver) -> list[IncidentUpdated]:
    return [d for d in driver.decisions if isinstance(d, IncidentUpdated)]


def test_one_market_down_is_not_averaged_away_by_three_healthy_ones() -> None:
    driver = Driver(Engine([SPLIT]))
    minutes(driver, 0, 31, DE=False, NL=True, FR=True, BE=True)
    [decision] = opened(driver)
    incident = decision.incident
    assert incident.opened_at == T0 + 30 * MIN
    assert incident.markets == ("DE",)
    assert incident.title == "dhl: label creation failing (DE)"
    assert incident.component_status is ComponentStatus.MAJOR_OUTAGE
    assert incident.started_at == T0
    assert incident.updates[0].body == (
        "We are investigating problems creating labels with dhl in Germany."
    )
    assert incident.updates[0].evidence == "DE: error_ratio (1) >= 0.9; seen from 1 of 1 instances"
    # Without split_by the same results average to 25 %: no incident at all.
    unsplit = Driver(Engine([rule()]))
    minutes(unsplit, 0, 31, DE=False, NL=True, FR=True, BE=True)
    assert opened(unsplit) == []


def test_a_market_joining_is_a_public_update_and_joins_the_title() -> None:
    driver = Driver(Engine([SPLIT]))
    minutes(driver, 0, 35, DE=False, NL=True)
    minutes(driver, 35, 45, DE=False, NL=False)
    incident = driver.only_incident()
    assert incident.markets == ("DE", "NL")
    assert incident.title == "dhl: label creation failing (DE, NL)"
    joined = updates(driver)[0].update
    assert joined.public and joined.evidence.startswith("joined: NL; ")
    assert joined.body.endswith("in Germany and the Netherlands.")
    assert len(opened(driver)) == 1


def test_a_market_recovering_while_another_fails_keeps_the_incident_open() -> None:
    driver = Driver(Engine([SPLIT]))
    minutes(driver, 0, 35, DE=False, NL=False)
    minutes(driver, 35, 60, DE=False, NL=True)
    incident = driver.only_incident()
    assert incident.status is IncidentStatus.INVESTIGATING
    assert incident.markets == ("DE", "NL")  # markets that failed during the incident stay
    minutes(driver, 60, 80, DE=True, NL=True)
    resolved = [d for d in driver.decisions if isinstance(d, IncidentResolved)]
    # DE's window drops below 0.3 (1 of 5) at 63: monitoring, resolved 10 minutes later.
    assert [d.update.at for d in resolved] == [T0 + 73 * MIN]


def test_a_market_relapsing_during_monitoring_reopens_the_same_incident() -> None:
    driver = Driver(Engine([SPLIT]))
    minutes(driver, 0, 35, DE=False, NL=True)
    minutes(driver, 35, 42, DE=True, NL=True)
    incident = driver.only_incident()
    assert incident.status is IncidentStatus.MONITORING
    minutes(driver, 42, 47, DE=True, NL=False)
    assert driver.only_incident() is incident
    assert incident.status is IncidentStatus.INVESTIGATING
    assert incident.markets == ("DE", "NL")
    assert len(opened(driver)) == 1


def test_a_deploy_before_one_market_fails_opens_identified_at_once() -> None:
    engine = Engine([SPLIT])
    driver = Driver(engine)
    engine.add_deploy(Deploy(T0 + 2 * MIN, "d-17", "label-api", "v2", ("carriers/dhl",)))
    minutes(driver, 0, 5, DE=True, NL=True)
    minutes(driver, 5, 8, DE=False, NL=True)
    incident = driver.only_incident()
    assert (incident.status, incident.cause, incident.deploy) == (
        IncidentStatus.IDENTIFIED,
        "deploy",
        "d-17",
    )
    assert incident.opened_at == T0 + 6 * MIN and incident.markets == ("DE",)
    assert incident.updates[0].body.startswith("A recent change on our side caused problems")
    assert "d-17" not in incident.updates[0].body and "d-17" in incident.updates[0].evidence


def test_a_deploy_flagged_bad_names_the_flag_in_the_evidence() -> None:
    engine = Engine([SPLIT])
    driver = Driver(engine)
    engine.add_deploy(Deploy(T0 - 60 * MIN, "d-9", "label-api", "v1", ("carriers/dhl",)))
    minutes(driver, 0, 10, DE=False, NL=True)
    engine.flag_deploy_bad(DeployFlaggedBad(T0 + 10 * MIN, "d-9"))
    minutes(driver, 10, 11, DE=False, NL=True)
    evidence = driver.only_incident().updates[0].evidence
    assert "deploy d-9 flagged bad at 2026-11-28T10:10:00Z" in evidence


def test_public_only_when_status_changes_impact_worsens_or_a_market_joins() -> None:
    driver = Driver(Engine([SPLIT]))
    minutes(driver, 0, 32, DE=False)
    minutes(driver, 32, 34, DE=True)  # 3 of 5 failing: partial (less): on-call only
    minutes(driver, 34, 40, DE=False)  # back to major at 38 (worse): public
    minutes(driver, 40, 50, DE=True)  # decays, then monitoring (status change): public
    flags = [(u.update.component_status, u.update.status, u.update.public) for u in updates(driver)]
    assert flags[0] == (ComponentStatus.PARTIAL_OUTAGE, IncidentStatus.INVESTIGATING, False)
    assert (ComponentStatus.MAJOR_OUTAGE, IncidentStatus.INVESTIGATING, True) in flags
    assert flags[-1][1:] == (IncidentStatus.MONITORING, True)
    assert [f for f in flags if f[1] is IncidentStatus.INVESTIGATING and not f[2]]


def test_no_data_is_judged_per_series() -> None:
    quiet = rule(split_by=("market",), min_results=3, no_data=NoData.OK)
    driver = Driver(Engine([quiet]))
    minutes(driver, 0, 33, DE=False, NL=None)  # DE fails from 2 (3 results)
    assert driver.only_incident().markets == ("DE",)
    minutes(driver, 33, 40, DE=None, NL=True)  # DE silent: ok by no_data, so monitoring
    assert driver.only_incident().status is IncidentStatus.MONITORING


def test_inhibition_holds_a_split_watch_and_lets_go_with_the_inhibitor() -> None:
    api = rule("api", match=Match(kind="http", component="sendcloud/*"))
    labels = rule(split_by=("market",), inhibited_by=("api",))
    engine = Engine([api, labels])
    driver = Driver(engine)
    for minute in range(0, 45):
        driver.run_until_before(minute)
        engine.observe(result(minute, minute >= 35, kind="http", component="sendcloud/api"))
        engine.observe(result(minute, False, market="DE"))
        driver.evaluate(driver.at(minute))
    driver.run_until(60)
    rules = [(d.incident.rule, d.incident.opened_at) for d in opened(driver)]
    assert rules[0] == ("api", T0 + 30 * MIN)
    assert rules[1][0] == "labels" and rules[1][1] > T0 + 45 * MIN  # after api resolved


def test_maintenance_restarts_each_market_clock_at_its_end() -> None:
    engine = Engine([SPLIT])
    driver = Driver(engine)
    engine.add_maintenance(Maintenance(T0 + 10 * MIN, T0 + 20 * MIN, ("carriers/dhl",), "", "m1"))
    minutes(driver, 0, 55, DE=False, NL=True)
    [decision] = opened(driver)
    assert decision.incident.opened_at == T0 + 50 * MIN


def test_restart_keeps_split_series_and_their_clocks() -> None:
    engine = Engine([SPLIT])
    driver = Driver(engine)
    minutes(driver, 0, 20, DE=False, NL=True)
    minutes(driver, 20, 40, DE=False, NL=False)
    state = dump_state(engine)
    assert {tuple(s["split"]) for s in state["series"]} == {("DE",), ("NL",)}
    restored = load_state([SPLIT], state, restored_at=driver.at(40))
    assert restored.open_incidents()[0].markets == ("DE", "NL")
    again = Driver(restored)
    minutes(again, 40, 80, DE=True, NL=True)
    assert [type(d) for d in again.decisions if isinstance(d, IncidentOpened)] == []
    assert any(isinstance(d, IncidentResolved) for d in again.decisions)


def test_reload_keeps_split_state_by_rule_name() -> None:
    engine = Engine([SPLIT])
    driver = Driver(engine)
    minutes(driver, 0, 20, DE=False)
    engine.set_rules([rule(split_by=("market",), open_after=25 * MIN)])
    minutes(driver, 20, 26, DE=False)
    assert [d.incident.opened_at for d in opened(driver)] == [T0 + 25 * MIN]


def test_a_reload_that_starts_splitting_keeps_the_incident_and_follows_the_new_series() -> None:
    engine = Engine([rule()])
    driver = Driver(engine)
    minutes(driver, 0, 31, DE=False)
    incident = driver.only_incident()
    engine.set_rules([SPLIT])
    minutes(driver, 31, 36, DE=False)
    assert driver.only_incident() is incident and incident.status is IncidentStatus.INVESTIGATING
    minutes(driver, 36, 60, DE=True)
    assert incident.status is IncidentStatus.RESOLVED  # no stale unsplit series holds it open


def test_engine_state_version_1_is_still_read() -> None:
    old = {
        "version": 1,
        "series": [
            {
                "rule": "labels", "component": "carriers/dhl", "failing": True,
                "status": "major_outage", "failing_since": T0, "deploy_cause": None,
                "inhibited": False, "stable_since": None,
                "incident": {
                    "id": "abc", "rule": "labels", "component": "carriers/dhl",
                    "title": "DHL down", "cause": "sustained", "deploy": None,
                    "impact": "major_outage", "status": "investigating",
                    "component_status": "major_outage", "opened_at": T0 + 30 * MIN,
                    "resolved_at": None, "markets": ["DE"],
                },
            }
        ],
        "deploys": [],
        "maintenances": [],
    }  # fmt: skip
    engine = load_state([rule()], old, restored_at=T0 + 40 * MIN)
    [incident] = engine.open_incidents()
    assert incident.id == "abc"
    assert engine.running_episodes()[0].started_at == T0
    driver = Driver(engine)
    minutes(driver, 40, 70, DE=True)
    assert incident.status is IncidentStatus.RESOLVED
