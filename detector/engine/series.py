"""What the engine keeps per rule: a watch per (rule, component), a series per split.

A **series** is what DESIGN's timing rules 1-8 run on: one window per instance (vantage
point), one verdict, one episode clock. A **watch** is one rule watching one component: its
series (one per `split_by` label values, or a single one), and the incident they share.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from detector.engine.when import When
from detector.engine.window import Entry, Window
from detector.model import ComponentStatus, Incident, IncidentStatus

WatchKey = tuple[str, str]  # (rule name, component id): the key of an incident
SeriesKey = tuple[str, str, tuple[str, ...]]  # (rule, component, split label values)


@dataclass(slots=True, eq=False)
class Series:
    """One split of a watch. Identity-hashed: the engine keeps sets of them."""

    watch: Watch
    split: tuple[str, ...] = ()
    market: str | None = None  # the `market` value when the rule splits by market
    track_latency: bool = False
    windows: dict[str, Window] = field(default_factory=dict)  # by instance
    solo: Window | None = None  # the only window, while there is exactly one
    solo_instance: str = ""  # whose window `solo` is
    suspects: deque[float] = field(default_factory=deque)  # times of suspect results
    failing: bool = False  # verdict of the last evaluation (after quorum)
    status: ComponentStatus | None = None  # impact of the last failing evaluation
    values: dict[str, float] | None = None  # window metrics of the last judgement
    matched: When | None = None  # the impact `when` that matched, if any
    short_count: int | None = None  # result count when the last judgement had too few
    agree: tuple[int, int] | None = None  # (instances judging it failing, instances)
    held: bool = False  # only suspect results in the window: nothing moves
    failing_since: float | None = None  # start of the running episode
    deploy_cause: str | None = None  # deploy id the running episode started after
    inhibited: bool = False  # the running episode reached its deadline while inhibited
    fresh_after: float | None = None  # restored from a saved state: hold until a result this new
    timer_at: float | None = None  # open deadline, if any
    wake_at: float | None = None  # when the oldest window entry leaves
    key: SeriesKey = field(init=False)  # (rule, component, split), made once: timers use it

    def __post_init__(self) -> None:
        self.key = (self.watch.rule, self.watch.component, self.split)

    @property
    def rule(self) -> str:
        return self.watch.rule

    @property
    def component(self) -> str:
        return self.watch.component

    def add(self, entry: Entry, instance: str, suspect: bool) -> None:
        if suspect:  # counts in no quorum; only remembered so a suspect-only window holds
            self.suspects.append(entry.at)
            return
        window = self.windows.get(instance)
        if window is None:
            window = self.windows[instance] = Window(self.track_latency)
            self.solo = window if len(self.windows) == 1 else None
            self.solo_instance = instance
        window.add(entry)

    def evict(self, horizon: float) -> int:
        """Drop what left the window; returns the (non-suspect) results left."""
        suspects = self.suspects
        while suspects and suspects[0] <= horizon:
            suspects.popleft()
        if len(self.windows) == 1:  # the common case: one vantage point
            window = next(iter(self.windows.values()))
            window.evict(horizon)
            return len(window.entries)
        total = 0
        for window in self.windows.values():
            window.evict(horizon)
            total += len(window)
        return total

    def oldest(self) -> float | None:
        if len(self.windows) == 1 and not self.suspects:  # the common case, kept cheap
            entries = next(iter(self.windows.values())).entries
            return entries[0].at if entries else None
        times = [w.entries[0].at for w in self.windows.values() if w.entries]
        if self.suspects:
            times.append(self.suspects[0])
        return min(times) if times else None

    def failed_markets(self) -> tuple[str, ...]:
        if self.market is not None:
            return (self.market,)
        found: set[str] = set()
        for window in self.windows.values():
            found.update(window.failed_markets())
        return tuple(sorted(found))

    def set_track_latency(self, enabled: bool) -> None:
        self.track_latency = enabled
        for window in self.windows.values():
            window.track_latency(enabled)


@dataclass(slots=True, eq=False)
class Watch:
    """One rule watching one component: its series and the one incident they share."""

    rule: str
    component: str
    series: dict[tuple[str, ...], Series] = field(default_factory=dict)
    incident: Incident | None = None
    stable_since: float | None = None  # monitoring since (no series failing)
    reopen_status: IncidentStatus = IncidentStatus.INVESTIGATING  # status a relapse returns to
    timer_at: float | None = None  # resolve deadline, if any
    split_by: tuple[str, ...] = ()  # the rule's split_by its series were made for
    # Series that freeze the watch: restored and unconfirmed (fresh_after), or held.
    blockers: set[Series] = field(default_factory=set)

    @property
    def key(self) -> WatchKey:
        return (self.rule, self.component)

    @property
    def failing_since(self) -> float | None:
        """When the earliest running episode of its series began."""
        times = [s.failing_since for s in self.series.values() if s.failing_since is not None]
        return min(times) if times else None


@dataclass(frozen=True, slots=True)
class SeriesError:
    """A watch whose evaluation raised; the pass went on without it."""

    rule: str
    component: str
    error: str  # one line: the exception type and message
