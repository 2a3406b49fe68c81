"""Per-(rule, component) state: the window, the verdict and the episode clocks."""

from __future__ import annotations

from dataclasses import dataclass, field

from detector.engine.when import When
from detector.engine.window import Window
from detector.model import ComponentStatus, Incident

SeriesKey = tuple[str, str]  # (rule name, component id)


@dataclass(slots=True, eq=False)
class Series:
    """One rule watching one component. Identity-hashed: the engine keeps sets of them."""

    rule: str
    component: str
    window: Window = field(default_factory=Window)
    failing: bool = False  # verdict of the last evaluation
    status: ComponentStatus | None = None  # impact of the last failing evaluation
    values: dict[str, float] | None = None  # window metrics of the last judgement
    matched: When | None = None  # the impact `when` that matched, if any
    short_count: int | None = None  # result count when the last judgement had too few (no_data)
    failing_since: float | None = None  # start of the running episode
    deploy_cause: str | None = None  # deploy id the running episode started after
    inhibited: bool = False  # the running episode reached its deadline while inhibited
    incident: Incident | None = None
    stable_since: float | None = None
    fresh_after: float | None = None  # restored from a saved state: hold until a result this new
    timer_at: float | None = None  # open or resolve deadline, if any
    wake_at: float | None = None  # when the oldest window entry leaves

    @property
    def key(self) -> SeriesKey:
        return (self.rule, self.component)


@dataclass(frozen=True, slots=True)
class SeriesError:
    """A series whose evaluation raised; the pass went on without it."""

    rule: str
    component: str
    error: str  # one line: the exception type and message
