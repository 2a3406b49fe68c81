"""The sliding window of one (rule, component) series, kept incrementally.

Adding a result and evicting old ones are O(1) amortised for the counts; a window whose rule
uses latency metrics also keeps its latencies sorted (insert/remove by bisection), so a
percentile is an index, not a sort per evaluation.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Mapping
from typing import Protocol, final

from detector.engine.when import LATENCY_METRICS


class Observed(Protocol):
    """What `observe` reads of a result: a ProbeResult, or replay's decoded line
    (`detector.events.ResultLine`), which spares replay a ProbeResult per line."""

    @property
    def at(self) -> float: ...
    @property
    def kind(self) -> str: ...
    @property
    def component(self) -> str: ...
    @property
    def probe(self) -> str: ...
    @property
    def ok(self) -> bool: ...
    @property
    def latency_s(self) -> float | None: ...
    @property
    def labels(self) -> Mapping[str, str]: ...
    @property
    def instance(self) -> str: ...
    @property
    def suspect(self) -> bool: ...


_QUANTILES = {"latency_p50": 0.50, "latency_p95": 0.95, "latency_p99": 0.99}


@final
class Entry:
    """One result as a window keeps it. A plain class, not a NamedTuple: compiled by mypyc,
    its fields are read as native floats and bools instead of tuple items."""

    __slots__ = ("at", "latency_s", "market", "ok")

    def __init__(self, at: float, ok: bool, latency_s: float | None, market: str | None) -> None:
        self.at = at
        self.ok = ok
        self.latency_s = latency_s
        self.market = market

    def moved(self, step: float) -> Entry:
        return Entry(self.at - step, self.ok, self.latency_s, self.market)


class Window:
    __slots__ = ("consecutive_failures", "entries", "failures", "latencies")

    def __init__(self, track_latency: bool = False) -> None:
        self.entries: deque[Entry] = deque()
        self.failures = 0
        self.consecutive_failures = 0  # failures at the newest end, unbroken by an ok
        self.latencies: list[float] | None = [] if track_latency else None

    def __len__(self) -> int:
        return len(self.entries)

    def track_latency(self, enabled: bool) -> None:
        """A reload may start or stop using latency metrics for this window's rule."""
        if enabled and self.latencies is None:
            self.latencies = sorted(e.latency_s for e in self.entries if e.latency_s is not None)
        elif not enabled:
            self.latencies = None

    def add(self, entry: Entry) -> None:
        entries = self.entries
        if self.latencies is not None and entry.latency_s is not None:
            bisect.insort(self.latencies, entry.latency_s)
        if entries and entry.at < entries[-1].at:
            self._insert_late(entry)
            return
        entries.append(entry)
        if entry.ok:
            self.consecutive_failures = 0
        else:
            self.failures += 1
            self.consecutive_failures += 1

    def _insert_late(self, entry: Entry) -> None:
        # Results from concurrent probes can finish out of order; rare, so recount.
        index = len(self.entries)
        while index > 0 and self.entries[index - 1].at > entry.at:
            index -= 1
        self.entries.insert(index, entry)
        self.failures = sum(1 for item in self.entries if not item.ok)
        self.consecutive_failures = 0
        for item in reversed(self.entries):
            if item.ok:
                break
            self.consecutive_failures += 1

    def evict(self, horizon: float) -> None:
        """Drop entries with `at <= horizon`: the window is `(now - span, now]`."""
        entries = self.entries
        latencies = self.latencies
        while entries and entries[0].at <= horizon:
            gone = entries.popleft()
            if not gone.ok:
                self.failures -= 1
            if latencies is not None and gone.latency_s is not None:
                del latencies[bisect.bisect_left(latencies, gone.latency_s)]
        if self.consecutive_failures > len(entries):
            self.consecutive_failures = len(entries)

    def shift_after(self, moment: float, step: float) -> None:
        """Move entries stamped after `moment` back by `step` (the wall clock jumped back)."""
        if not self.entries or self.entries[-1].at <= moment:
            return
        moved = sorted(
            (e.moved(step) if e.at > moment else e for e in self.entries),
            key=lambda e: e.at,
        )
        self.entries = deque(moved)
        self.failures = sum(1 for item in moved if not item.ok)
        self.consecutive_failures = 0
        for item in reversed(moved):
            if item.ok:
                break
            self.consecutive_failures += 1

    def oldest(self) -> float | None:
        return self.entries[0].at if self.entries else None

    def metrics(self, names: frozenset[str]) -> dict[str, float]:
        """The window's metrics; latency percentiles only when asked for."""
        results = len(self.entries)
        failures = self.failures
        error_ratio = failures / results if results else 0.0
        values = {
            "results": float(results),
            "failures": float(failures),
            "error_ratio": error_ratio,
            "success_ratio": 1.0 - error_ratio if results else 0.0,
            "consecutive_failures": float(self.consecutive_failures),
        }
        if not names.isdisjoint(LATENCY_METRICS):
            latencies = self.latencies
            if latencies is None:  # not tracked (an ad-hoc caller): sort once
                latencies = sorted(e.latency_s for e in self.entries if e.latency_s is not None)
            for name in names & LATENCY_METRICS:
                values[name] = percentile(latencies, name)
        return values

    def failed_markets(self) -> tuple[str, ...]:
        return tuple(sorted({e.market for e in self.entries if not e.ok and e.market}))


def percentile(latencies: list[float], name: str) -> float:
    """Nearest-rank percentile of sorted latencies (0 when no result carries one)."""
    if not latencies:
        return 0.0
    if name == "latency_max":
        return latencies[-1]
    return latencies[max(0, math.ceil(_QUANTILES[name] * len(latencies)) - 1)]
