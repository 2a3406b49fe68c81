"""The value types that flow through detector: results and events in, decisions out.

Kept free of I/O and of any library but the standard one, so the engine, the store, the
API and the probes all speak the same plain objects.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal, TypeVar, dataclass_transform

from detector.timeutil import format_time

if TYPE_CHECKING:  # the parsed form lives with its parser; model stays stdlib-only
    from detector.engine.when import When


class ComponentStatus(StrEnum):
    """Statuspage's five component statuses."""

    OPERATIONAL = "operational"
    DEGRADED_PERFORMANCE = "degraded_performance"
    PARTIAL_OUTAGE = "partial_outage"
    MAJOR_OUTAGE = "major_outage"
    UNDER_MAINTENANCE = "under_maintenance"

    @property
    def severity(self) -> int:
        return _SEVERITY[self]

    @property
    def words(self) -> str:
        """The status as English words ("major outage"): the one table of them."""
        return self.value.replace("_", " ")


# Maintenance ranks below outages: an outage during maintenance still reads as an outage in
# incident bodies, while the component itself is shown in blue (see Engine.component_status).
_SEVERITY = {
    ComponentStatus.OPERATIONAL: 0,
    ComponentStatus.UNDER_MAINTENANCE: 1,
    ComponentStatus.DEGRADED_PERFORMANCE: 2,
    ComponentStatus.PARTIAL_OUTAGE: 3,
    ComponentStatus.MAJOR_OUTAGE: 4,
}


class IncidentStatus(StrEnum):
    INVESTIGATING = "investigating"
    IDENTIFIED = "identified"
    MONITORING = "monitoring"
    RESOLVED = "resolved"


class NoData(StrEnum):
    KEEP = "keep"
    FAILING = "failing"
    OK = "ok"


PROBE_KINDS = ("label_creation", "order_import", "http", "tracking")

# Why a probe run was not ok: `fail` = the target answered, wrongly (HTTP 503, a missing
# label); `error` = no usable answer at all (timeout, refused connection, a crash). The probe
# knows which; nobody downstream guesses it from the error text.
FailureKind = Literal["fail", "error"]

# A component id is `group/slug`, in one of the status page's three groups.
COMPONENT_ID_PATTERN = r"^(sendcloud|carriers|integrations)/[a-z0-9][a-z0-9_.-]*$"


# ---------------------------------------------------------------------------------- input


_T = TypeVar("_T")


@dataclass_transform(frozen_default=True)
def _typed_frozen(cls: type[_T]) -> type[_T]:
    """A frozen dataclass to the type checker, a plain slotted one at run time: a frozen
    dataclass's `__init__` goes through `object.__setattr__` for every field, ~1 µs hot and
    ~3 µs on the probe path (one result a run; bench/probe_cost_bench.py). mypy, which
    checks every module in `make test`, rejects any assignment to a field."""
    return dataclass(slots=True, unsafe_hash=True)(cls)  # hashable like a frozen one


@_typed_frozen
class ProbeResult:
    """One probe run. `at` is when it finished (epoch seconds)."""

    at: float
    probe: str
    kind: str
    component: str
    ok: bool
    latency_s: float | None = None
    error: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    phases: Mapping[str, float] = field(default_factory=dict)
    failure_kind: FailureKind = "fail"  # meaningful only when not ok
    instance: str = ""  # the daemon (vantage point) that produced it
    suspect: bool = False  # its daemon's self-check canaries were failing

    @property
    def result(self) -> str:
        """The `result` label of detector_probe_runs_total: ok, fail or error."""
        return "ok" if self.ok else self.failure_kind


@dataclass(frozen=True, slots=True)
class Deploy:
    at: float
    id: str
    service: str
    version: str
    components: tuple[str, ...]
    bad: bool = False


@dataclass(frozen=True, slots=True)
class DeployFlaggedBad:
    at: float
    id: str


@dataclass(frozen=True, slots=True)
class Maintenance:
    """A window `[start, end)` in which `components` show under_maintenance."""

    start: float
    end: float
    components: tuple[str, ...]
    title: str = ""
    id: str = ""
    created_at: float | None = None  # when it was recorded; None when not known

    @property
    def at(self) -> float:
        return self.start

    def covers(self, component: str, now: float) -> bool:
        return self.start <= now < self.end and component in self.components


Event = ProbeResult | Deploy | DeployFlaggedBad | Maintenance


# ---------------------------------------------------------------------------------- rules


@dataclass(frozen=True, slots=True)
class Match:
    kind: str | None = None
    component: str | None = None  # glob on component id
    probe: str | None = None  # glob on probe id


@dataclass(frozen=True, slots=True)
class Impact:
    status: ComponentStatus
    when: When  # a parsed `when` expression (never Python `eval`)


# What public text (title, message, public_text) may name: nothing internal.
PUBLIC_FIELDS = ("component_name", "markets", "market_list")
Quorum = Literal["majority", "any", "all"] | int


def quorum_needed(quorum: Quorum, instances: int) -> int:
    """How many of `instances` must judge a series failing: majority of 1 is 1, of 2 is 2,
    of 3 is 2; a number is taken as is (fewer instances reporting can never reach it)."""
    if quorum == "majority":
        return instances // 2 + 1
    if quorum == "any":
        return 1
    if quorum == "all":
        return max(instances, 1)
    return quorum


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    match: Match
    impact: tuple[Impact, ...]
    description: str = ""
    window: float = 300.0
    min_results: int = 1
    open_after: float = 1800.0
    resolve_after: float = 600.0
    deploy_window: float = 900.0
    no_data: NoData = NoData.KEEP
    inhibited_by: tuple[str, ...] = ()
    title: str = "{component_name}: failing{markets}"  # public; see PUBLIC_FIELDS
    message: str = ""  # public opening sentence; "" = the default sentence of its status
    source: str = ""  # "file:line" of the rule, for messages
    split_by: tuple[str, ...] = ()  # result labels: one series per value (e.g. market)
    quorum: Quorum = "majority"  # instances that must agree a series fails
    public_text: tuple[tuple[str, str], ...] = ()  # (incident status, template) overrides

    @property
    def metrics(self) -> frozenset[str]:
        used: set[str] = set()
        for entry in self.impact:
            used |= entry.when.metrics
        return frozenset(used)


# ---------------------------------------------------------------------------------- output

Cause = Literal["sustained", "deploy", "manual"]
EpisodeOutcome = Literal["incident", "too_short", "maintenance", "inhibited", "pending"]


@dataclass(slots=True)
class IncidentUpdate:
    at: float
    status: IncidentStatus
    component_status: ComponentStatus
    body: str  # public text: shown on the status page and to subscribers
    evidence: str = ""  # internal: values, expressions, deploy ids; on-call only
    public: bool = True  # False: recorded for on-call, never shown on the page or JSON


@dataclass(slots=True)
class Incident:
    id: str
    rule: str
    component: str
    title: str
    cause: Cause
    deploy: str | None
    impact: ComponentStatus  # the worst component status seen while open
    status: IncidentStatus
    component_status: ComponentStatus  # the current one
    opened_at: float
    resolved_at: float | None = None
    updates: list[IncidentUpdate] = field(default_factory=list)
    markets: tuple[str, ...] = ()
    started_at: float | None = None  # when the failure began (failing_since), not opened_at


def note_time(latest: float | None, now: float) -> float:
    """When an on-call note written at `now` is recorded: `now`, or a millisecond after the
    incident's latest update if that is not earlier. Updates are keyed by (incident, time,
    status) so that re-applying a decision is a no-op; a second note in the same instant must
    not collide with the first (or be dropped as its repeat)."""
    return now if latest is None or latest < now else round(latest + 0.001, 6)


def incident_fields(incident: Incident) -> dict[str, Any]:
    """An incident without its updates as plain JSON-able values (store rows, engine state)."""
    return {
        "id": incident.id,
        "rule": incident.rule,
        "component": incident.component,
        "title": incident.title,
        "cause": incident.cause,
        "deploy": incident.deploy,
        "impact": str(incident.impact),
        "status": str(incident.status),
        "component_status": str(incident.component_status),
        "opened_at": incident.opened_at,
        "resolved_at": incident.resolved_at,
        "markets": list(incident.markets),
        "started_at": incident.started_at,
    }


def incident_to_dict(
    incident: Incident, *, time: Callable[[float], str | None] = format_time
) -> dict[str, Any]:
    """The one JSON form of an incident with its timeline, exactly DESIGN's replay object
    (replay, rule tests, webhooks). `time` formats each instant (webhooks pass one that
    writes null for a time no reader can format)."""
    return {
        "id": incident.id,
        "rule": incident.rule,
        "component": incident.component,
        "title": incident.title,
        "cause": incident.cause,
        "deploy": incident.deploy,
        "impact": str(incident.impact),
        "opened_at": time(incident.opened_at),
        "resolved_at": None if incident.resolved_at is None else time(incident.resolved_at),
        "markets": list(incident.markets),
        "updates": [update_to_dict(update, time=time) for update in incident.updates],
    }


def update_to_dict(
    update: IncidentUpdate, *, time: Callable[[float], str | None] = format_time
) -> dict[str, Any]:
    return {
        "at": time(update.at),
        "status": str(update.status),
        "component_status": str(update.component_status),
        "body": update.body,
        "evidence": update.evidence,
    }


@dataclass(slots=True)
class Episode:
    rule: str
    component: str
    started_at: float
    ended_at: float | None
    outcome: EpisodeOutcome
    incident_id: str | None = None


@dataclass(frozen=True, slots=True)
class IncidentOpened:
    incident: Incident


@dataclass(frozen=True, slots=True)
class IncidentUpdated:
    incident: Incident
    update: IncidentUpdate


@dataclass(frozen=True, slots=True)
class IncidentResolved:
    incident: Incident
    update: IncidentUpdate


@dataclass(frozen=True, slots=True)
class EpisodeEnded:
    episode: Episode


Decision = IncidentOpened | IncidentUpdated | IncidentResolved | EpisodeEnded
