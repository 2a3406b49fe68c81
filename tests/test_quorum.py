"""Vantage quorum and suspect results (DESIGN "Markets and vantage points")."""

from __future__ import annotations

import pytest
from enginekit import MIN, T0, Driver, result, rule

from detector.engine import Engine
from detector.model import IncidentOpened, IncidentStatus, Quorum, quorum_needed


@pytest.mark.parametrize(
    ("quorum", "instances", "needed"),
    [
        ("majority", 1, 1), ("majority", 2, 2), ("majority", 3, 2), ("majority", 4, 3),
        ("any", 3, 1), ("all", 3, 3), ("all", 1, 1), (2, 3, 2), (2, 1, 2),
    ],
)  # fmt: skip
def test_quorum_needed(quorum: Quorum, instances: int, needed: int) -> None:
    assert quorum_needed(quorum, instances) == needed


def run(driver: Driver, start: int, stop: int, **instances: bool | None) -> None:
    """One result a minute per instance (`ams=False` fails there); `suspect_<name>` too."""
    for minute in range(start, stop):
        driver.run_until_before(minute)
        for name, ok in instances.items():
            suspect = name.startswith("suspect_")
            if ok is not None:
                driver.engine.observe(
                    result(minute, ok, instance=name.removeprefix("suspect_"), suspect=suspect)
                )
        driver.evaluate(driver.at(minute))


def opened(driver: Driver) -> list[float]:
    return [d.incident.opened_at for d in driver.decisions if isinstance(d, IncidentOpened)]


def test_two_of_three_instances_agree_and_the_evidence_says_so() -> None:
    driver = Driver(Engine([rule()]))
    run(driver, 0, 31, ams=False, fra=False, lon=True)
    incident = driver.only_incident()
    assert incident.opened_at == T0 + 30 * MIN
    assert incident.updates[0].evidence == "error_ratio (1) >= 0.9; seen from 2 of 3 instances"


def test_one_of_three_is_not_a_majority() -> None:
    driver = Driver(Engine([rule()]))
    run(driver, 0, 40, ams=False, fra=True, lon=True)
    assert opened(driver) == []
    assert driver.engine.running_episodes() == []


@pytest.mark.parametrize(("quorum", "opens"), [("majority", False), ("any", True), ("all", False)])
def test_two_instances_one_sees_it(quorum: Quorum, opens: bool) -> None:
    driver = Driver(Engine([rule(quorum=quorum)]))
    run(driver, 0, 31, ams=False, fra=True)
    assert opened(driver) == ([T0 + 30 * MIN] if opens else [])


def test_status_is_what_the_quorum_agrees_on() -> None:
    # ams sees everything fail (major), fra 2 of 5 (partial): `any` takes the worst one,
    # `all` what both agree on.
    def status(quorum: Quorum) -> str:
        driver = Driver(Engine([rule(quorum=quorum)]))
        for minute in range(0, 31):
            driver.run_until_before(minute)
            driver.engine.observe(result(minute, False, instance="ams"))
            driver.engine.observe(result(minute, minute % 5 >= 2, instance="fra"))
            driver.evaluate(driver.at(minute))
        return driver.only_incident().component_status.value

    assert status("any") == "major_outage"
    assert status("all") == "partial_outage"


def test_suspect_results_count_in_no_quorum() -> None:
    driver = Driver(Engine([rule()]))
    run(driver, 0, 40, suspect_ams=False, fra=True)
    assert opened(driver) == []


def test_a_suspect_only_window_holds_everything_still() -> None:
    """With one instance gone suspect, nothing opens and no update is posted - even for an
    incident already open - until its canaries pass again."""
    driver = Driver(Engine([rule()]))
    run(driver, 0, 31, ams=False)
    incident = driver.only_incident()
    count = len(incident.updates)
    run(driver, 31, 60, suspect_ams=True)  # its "all fine" cannot be trusted
    assert incident.status is IncidentStatus.INVESTIGATING and len(incident.updates) == count
    run(driver, 60, 80, ams=True)  # trusted again: monitoring, then resolved
    assert incident.status is IncidentStatus.RESOLVED


def test_a_suspect_instance_alone_never_opens() -> None:
    driver = Driver(Engine([rule()]))
    run(driver, 0, 60, suspect_ams=False)
    assert opened(driver) == [] and driver.engine.running_episodes() == []
