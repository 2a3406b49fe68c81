"""90 days of per-component history, derived from incidents and maintenance windows: one bar
per UTC day coloured by the worst status, minutes per status, uptime weighted as Statuspage."""

from __future__ import annotations

from datetime import date

import pytest

from detector.model import ComponentStatus, Incident, IncidentStatus, IncidentUpdate, Maintenance
from detector.web.history import (
    DAY,
    component_history,
    day_start,
    month_bounds,
    month_of,
    next_month,
    segments,
)

NOW = 1_795_860_000.0  # 2026-11-28T10:00:00Z
TODAY = day_start(NOW)  # 2026-11-28T00:00:00Z
OK, DEGRADED = ComponentStatus.OPERATIONAL, ComponentStatus.DEGRADED_PERFORMANCE
PARTIAL, MAJOR = ComponentStatus.PARTIAL_OUTAGE, ComponentStatus.MAJOR_OUTAGE
BLUE = ComponentStatus.UNDER_MAINTENANCE


def incident(
    opened: float,
    changes: list[tuple[float, ComponentStatus]],
    resolved: float | None = None,
    component: str = "carriers/dhl",
    incident_id: str = "i-1",
) -> Incident:
    updates = [
        IncidentUpdate(at, IncidentStatus.INVESTIGATING, status, "x", public=index % 2 == 0)
        for index, (at, status) in enumerate(changes)
    ]  # public or not, an update changes the component's status
    if resolved is not None:
        updates.append(IncidentUpdate(resolved, IncidentStatus.RESOLVED, OK, "Resolved."))
    return Incident(
        id=incident_id, rule="r", component=component, title="t", cause="sustained",
        deploy=None, impact=MAJOR, status=IncidentStatus.RESOLVED if resolved else
        IncidentStatus.INVESTIGATING, component_status=changes[-1][1], opened_at=opened,
        resolved_at=resolved, updates=updates,
    )  # fmt: skip


def test_an_incident_is_a_run_of_segments_ending_at_its_resolution() -> None:
    one = incident(TODAY + 3600, [(TODAY + 3600, PARTIAL), (TODAY + 5400, MAJOR)], TODAY + 7200)
    assert segments("carriers/dhl", [one], NOW) == [
        (TODAY + 3600, TODAY + 5400, PARTIAL),
        (TODAY + 5400, TODAY + 7200, MAJOR),
    ]
    assert segments("carriers/ups", [one], NOW) == []
    still_open = incident(TODAY + 3600, [(TODAY + 3600, DEGRADED)])
    assert segments("carriers/dhl", [still_open], NOW) == [(TODAY + 3600, NOW, DEGRADED)]


def test_ninety_bars_oldest_first_the_last_one_today() -> None:
    history = component_history("carriers/dhl", [], [], NOW)
    assert len(history.bars) == 90
    assert history.bars[-1].day == date(2026, 11, 28)
    assert history.bars[0].day == date(2026, 8, 31)
    assert {bar.status for bar in history.bars} == {OK}
    assert history.uptime == 1.0


def test_a_day_is_coloured_by_its_worst_status_with_minutes_in_each() -> None:
    yesterday = TODAY - DAY
    one = incident(
        yesterday + 3600,
        [(yesterday + 3600, DEGRADED), (yesterday + 3600 + 1200, MAJOR)],
        yesterday + 3600 + 1200 + 2700,
    )
    window = Maintenance(yesterday + 20 * 3600, yesterday + 21 * 3600, ("carriers/dhl",))
    bar = component_history("carriers/dhl", [one], [window], NOW).bars[-2]
    assert bar.day == date(2026, 11, 27)
    assert bar.status is MAJOR
    assert bar.minutes() == [(MAJOR, 45), (DEGRADED, 20), (BLUE, 60)]


def test_overlapping_incidents_count_the_worst_at_each_moment() -> None:
    first = incident(TODAY, [(TODAY, PARTIAL)], TODAY + 3600, incident_id="a")
    second = incident(TODAY + 1800, [(TODAY + 1800, MAJOR)], TODAY + 2400, incident_id="b")
    # maintenance ranks below an outage: a failure during a window still reads as an outage
    window = Maintenance(TODAY, TODAY + 7200, ("carriers/dhl",))
    bar = component_history("carriers/dhl", [first, second], [window], NOW).bars[-1]
    assert bar.minutes() == [(MAJOR, 10), (PARTIAL, 50), (BLUE, 60)]


def test_an_incident_across_midnight_splits_between_days_and_today_ends_now() -> None:
    one = incident(TODAY - 1800, [(TODAY - 1800, MAJOR)])  # still open at NOW (10:00)
    bars = component_history("carriers/dhl", [one], [], NOW).bars
    assert bars[-2].minutes() == [(MAJOR, 30)]
    assert bars[-1].minutes() == [(MAJOR, 600)]


def test_uptime_weights_major_fully_and_partial_at_thirty_percent() -> None:
    major = incident(TODAY - 10 * DAY, [(TODAY - 10 * DAY, MAJOR)], TODAY - 10 * DAY + 3600)
    partial = incident(
        TODAY - 5 * DAY, [(TODAY - 5 * DAY, PARTIAL)], TODAY - 5 * DAY + 7200, incident_id="p"
    )
    degraded = incident(
        TODAY - 3 * DAY, [(TODAY - 3 * DAY, DEGRADED)], TODAY - 2 * DAY, incident_id="d"
    )
    observed = 89 * DAY + (NOW - TODAY)
    history = component_history("carriers/dhl", [major, partial, degraded], [], NOW)
    assert history.uptime == pytest.approx(1 - (3600 + 0.3 * 7200) / observed)
    assert round(history.uptime * 100, 2) == 99.93


def test_history_before_the_window_and_bad_times_are_ignored() -> None:
    old = incident(TODAY - 200 * DAY, [(TODAY - 200 * DAY, MAJOR)], TODAY - 199 * DAY)
    odd = incident(TODAY + 60, [(TODAY + 60, MAJOR), (1e14, PARTIAL)], incident_id="odd")
    history = component_history("carriers/dhl", [old, odd], [], NOW)
    assert [bar.status for bar in history.bars[:-1]] == [OK] * 89
    assert history.bars[-1].minutes() == [(MAJOR, 599)]


def test_months() -> None:
    start, end = month_bounds(2026, 12)
    assert (start, end) == (1_796_083_200.0, 1_798_761_600.0)
    assert month_of(NOW) == (2026, 11)
    assert month_of(end - 1) == (2026, 12) and month_of(end) == (2027, 1)
    assert next_month(2026, 12) == (2027, 1) and next_month(2026, 2) == (2026, 3)
