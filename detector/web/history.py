"""A component's past, derived from what the store already keeps: its incidents (each update
sets the component status from its time on; resolving sets operational) and its maintenance
windows (under maintenance). No status table of its own, so history is exact to the second
the incidents are, and the page, the JSON and the history can never disagree.

Days are UTC days. Uptime weights time as Atlassian Statuspage does: a major outage counts
fully as downtime, a partial outage 30 %, degraded performance and maintenance not at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from itertools import pairwise

from detector.model import ComponentStatus, Incident, Maintenance

DAY = 86400.0
HISTORY_DAYS = 90
DOWNTIME_WEIGHT = {ComponentStatus.MAJOR_OUTAGE: 1.0, ComponentStatus.PARTIAL_OUTAGE: 0.3}

Segment = tuple[float, float, ComponentStatus]  # [start, end) in one status


@dataclass(frozen=True, slots=True)
class DayBar:
    day: date
    status: ComponentStatus  # the worst status that day
    seconds: dict[ComponentStatus, float] = field(default_factory=dict)  # not operational

    def minutes(self) -> list[tuple[ComponentStatus, int]]:
        """Minutes in each status other than operational, worst first (at least 1 if any)."""
        ranked = sorted(self.seconds.items(), key=lambda item: -item[0].severity)
        return [(status, max(1, round(seconds / 60))) for status, seconds in ranked if seconds]


@dataclass(frozen=True, slots=True)
class ComponentHistory:
    component: str
    bars: list[DayBar]  # oldest first
    uptime: float  # 0..1 over the bars' span up to now


def day_start(epoch: float) -> float:
    return (epoch // DAY) * DAY


def segments(component: str, incidents: Iterable[Incident], until: float) -> list[Segment]:
    """The non-operational stretches of `component`'s incidents, ended at `until` when open."""
    found: list[Segment] = []
    for incident in incidents:
        if incident.component != component:
            continue
        end = incident.resolved_at if incident.resolved_at is not None else until
        updates = sorted(incident.updates, key=lambda update: update.at)
        current = updates[0].component_status if updates else incident.impact
        previous = incident.opened_at
        for update in updates:
            at = min(max(update.at, incident.opened_at), end)
            if at > previous:
                found.append((previous, at, current))
            previous, current = at, update.component_status
        if end > previous:
            found.append((previous, end, current))
    return [s for s in found if s[2] is not ComponentStatus.OPERATIONAL]


def maintenance_segments(component: str, maintenances: Iterable[Maintenance]) -> list[Segment]:
    status = ComponentStatus.UNDER_MAINTENANCE
    return [(m.start, m.end, status) for m in maintenances if component in m.components]


def _seconds_by_status(
    spans: Sequence[Segment], start: float, end: float
) -> dict[ComponentStatus, float]:
    """Seconds of [start, end) spent in each status, the worst covering one at each moment."""
    inside = [(max(a, start), min(b, end), s) for a, b, s in spans if a < end and b > start]
    cuts = sorted({start, end, *(a for a, _, _ in inside), *(b for _, b, _ in inside)})
    totals: dict[ComponentStatus, float] = {}
    for left, right in pairwise(cuts):
        covering = [s for a, b, s in inside if a <= left and b >= right]
        if covering:
            status = max(covering, key=lambda s: s.severity)
            totals[status] = totals.get(status, 0.0) + right - left
    return totals


def component_history(
    component: str,
    incidents: Sequence[Incident],
    maintenances: Sequence[Maintenance],
    now: float,
    days: int = HISTORY_DAYS,
) -> ComponentHistory:
    """One bar per UTC day, the last one today (up to `now`), and uptime over them."""
    spans = segments(component, incidents, now) + maintenance_segments(component, maintenances)
    first = day_start(now) - (days - 1) * DAY
    if not any(a < now and b > first for a, b, _ in spans):
        return ComponentHistory(component, _quiet_bars(first, days), 1.0)
    bars, observed, down = [], 0.0, 0.0
    for index in range(days):
        start = first + index * DAY
        end = min(start + DAY, now)
        seconds = _seconds_by_status(spans, start, end) if end > start else {}
        worst = max(seconds, key=lambda s: s.severity, default=ComponentStatus.OPERATIONAL)
        bars.append(DayBar(datetime.fromtimestamp(start, tz=UTC).date(), worst, seconds))
        observed += max(0.0, end - start)
        down += sum(DOWNTIME_WEIGHT.get(s, 0.0) * t for s, t in seconds.items())
    uptime = 1.0 - down / observed if observed > 0 else 1.0
    return ComponentHistory(component, bars, uptime)


@lru_cache(maxsize=8)
def _quiet_bars(first: float, days: int) -> list[DayBar]:
    """All-operational bars, shared by every quiet component until the day rolls over: the
    page is rendered on every change, and most components have nothing in 90 days."""
    operational = ComponentStatus.OPERATIONAL
    return [
        DayBar(datetime.fromtimestamp(first + i * DAY, tz=UTC).date(), operational)
        for i in range(days)
    ]


# ---------------------------------------------------------------------------- months


def month_bounds(year: int, month: int) -> tuple[float, float]:
    """[first second, first second of the next month) in UTC epoch seconds."""
    start = datetime(year, month, 1, tzinfo=UTC)
    following = (start + timedelta(days=32)).replace(day=1)
    return start.timestamp(), following.timestamp()


def month_of(epoch: float) -> tuple[int, int]:
    moment = datetime.fromtimestamp(epoch, tz=UTC)
    return moment.year, moment.month


def month_key(year: int, month: int) -> str:
    return f"{year:04d}-{month:02d}"


def next_month(year: int, month: int) -> tuple[int, int]:
    return (year + 1, 1) if month == 12 else (year, month + 1)
