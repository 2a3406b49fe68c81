"""Issue #8 on the engine side: a bad series, a reload or a clock step never takes it down."""

from __future__ import annotations

from enginekit import MIN, T0, Driver, boom_impact, result, rule

from detector.engine import Engine, SeriesError
from detector.engine.state import dump_state, load_state
from detector.model import (
    ComponentStatus,
    Deploy,
    DeployFlaggedBad,
    IncidentOpened,
    IncidentResolved,
    IncidentStatus,
    Match,
)


def opened(driver: Driver) -> dict[str, float]:
    return {
        d.incident.component: d.incident.opened_at
        for d in driver.decisions
        if isinstance(d, IncidentOpened)
    }


def fail_both(driver: Driver, start: int, stop: int) -> None:
    for minute in range(start, stop):
        driver.run_until_before(minute)
        driver.engine.observe(result(minute, False, component="carriers/dhl"))
        driver.engine.observe(result(minute, False, component="carriers/ups", probe="ups-de"))
        driver.evaluate(driver.at(minute))


def test_a_deploy_with_an_absurd_time_breaks_only_its_own_series() -> None:
    engine = Engine([rule()])
    driver = Driver(engine)
    fail_both(driver, 0, 5)
    # A deploy "in the year 30 billion": naming it in the evidence cannot format its time.
    engine.add_deploy(Deploy(1e18, "d-bad", "label-api", "v1", ("carriers/dhl",)))
    engine.flag_deploy_bad(DeployFlaggedBad(driver.at(5), "d-bad"))
    fail_both(driver, 5, 31)
    assert opened(driver) == {"carriers/ups": T0 + 30 * MIN}
    assert [(e.rule, e.component) for e in engine.errors] == [("labels", "carriers/dhl")]
    assert engine.errors[0].error.split(":")[0] in ("OSError", "ValueError", "OverflowError")
    assert "\n" not in engine.errors[0].error
    assert engine.broken[("labels", "carriers/dhl")] >= 26  # every pass since the flag


def test_a_rule_whose_evaluation_raises_leaves_the_other_rules_working() -> None:
    bad = rule("bad", impact=boom_impact())
    engine = Engine([bad, rule("labels")])
    driver = Driver(engine)
    driver.minutes(0, 31, ok=False)
    assert [i.rule for i in engine.open_incidents()] == ["labels"]
    assert engine.errors == [SeriesError("bad", "carriers/dhl", "ZeroDivisionError: boom")]
    assert engine.broken == {("bad", "carriers/dhl"): 31}


def test_broken_count_clears_when_the_series_steps_fine_again() -> None:
    flaky = rule(impact=boom_impact())
    engine = Engine([flaky])
    driver = Driver(engine)
    driver.minutes(0, 3, ok=False)
    assert engine.broken == {("labels", "carriers/dhl"): 3}
    engine.set_rules([rule()])
    driver.minutes(3, 4, ok=False)
    assert engine.errors == [] and engine.broken == {}


# ------------------------------------------------------------------ reload and orphans


def test_an_incident_of_a_removed_rule_stays_open_until_on_call_resolves_it() -> None:
    engine = Engine([rule(), rule("other")])
    driver = Driver(engine)
    driver.minutes(0, 31, ok=False)
    engine.set_rules([rule("other")])
    driver.minutes(31, 60, ok=True)  # the failure ends, but nobody watches it any more
    orphan = engine.orphans()[0]
    assert orphan.rule == "labels" and orphan.status is IncidentStatus.INVESTIGATING
    assert orphan in engine.open_incidents()
    assert engine.component_statuses(driver.now)["carriers/dhl"] is ComponentStatus.MAJOR_OUTAGE
    decisions = engine.manual_update(orphan.id, IncidentStatus.RESOLVED, "Fixed.", driver.at(60))
    assert [type(d) for d in decisions if isinstance(d, IncidentResolved)] == [IncidentResolved]
    assert engine.orphans() == []


def test_a_rule_that_comes_back_picks_its_orphaned_incident_up() -> None:
    engine = Engine([rule(), rule("other")])
    driver = Driver(engine)
    driver.minutes(0, 31, ok=False)
    incident = next(i for i in engine.open_incidents() if i.rule == "labels")
    engine.set_rules([rule("other")])
    driver.minutes(31, 33, ok=False)
    engine.set_rules([rule(), rule("other")])  # the bad edit is reverted
    assert engine.orphans() == []
    driver.minutes(33, 60, ok=True)
    resolved = [d.incident for d in driver.decisions if isinstance(d, IncidentResolved)]
    assert incident.id in [i.id for i in resolved]


def test_orphans_survive_a_restart() -> None:
    engine = Engine([rule(), rule("other")])
    driver = Driver(engine)
    driver.minutes(0, 31, ok=False)
    engine.set_rules([rule("other")])
    restored = load_state([rule("other")], dump_state(engine))
    assert [i.rule for i in restored.orphans()] == ["labels"]


# ------------------------------------------------------------------ the wall clock steps back


def test_a_clock_stepping_back_an_hour_does_not_hold_an_incident_open() -> None:
    engine = Engine([rule()])
    driver = Driver(engine)
    driver.minutes(0, 40, ok=False)
    assert driver.only_incident().status is IncidentStatus.INVESTIGATING
    # NTP steps the clock back an hour: the next result is stamped -19 minutes, not 41.
    for minute in range(-19, 0):
        engine.observe(result(minute, True))
        driver.evaluate(driver.at(minute))
    driver.run_until(0)
    resolved = [d for d in driver.decisions if isinstance(d, IncidentResolved)]
    assert resolved, "the failures stamped before the step kept the incident open"
    # Monitoring once the old failures left the window (5m), resolved 10m later.
    assert resolved[0].update.at <= driver.at(-19 + 5 + 10 + 1)


def test_evaluating_earlier_than_last_time_keeps_timers_running() -> None:
    engine = Engine([rule()])
    driver = Driver(engine)
    driver.minutes(0, 10, ok=False)
    driver.evaluate(driver.at(-50))  # an hour back, mid-episode
    deadline = engine.next_deadline()
    assert deadline is not None and deadline <= driver.at(-50) + 30 * MIN
    for minute in range(-49, -25):
        engine.observe(result(minute, False))
        driver.evaluate(driver.at(minute))
    driver.run_until(-25)
    # The step seen is 59 minutes (last evaluation at 9, now -50): failing since 0 becomes
    # -59, so it opens 30 minutes later, at -29 - not an hour late.
    assert opened(driver) == {"carriers/dhl": driver.at(-29)}


def test_a_narrowed_match_orphans_and_widening_it_again_restores() -> None:
    engine = Engine([rule()])
    driver = Driver(engine)
    driver.minutes(0, 31, ok=False)
    engine.set_rules([rule(match=Match(kind="label_creation", component="carriers/ups"))])
    assert len(engine.orphans()) == 1
    engine.set_rules([rule()])
    assert engine.orphans() == [] and len(engine.open_incidents()) == 1
