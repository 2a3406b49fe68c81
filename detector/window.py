"""The sliding window of one (rule, component) series, kept incrementally.

Adding a result and evicting old ones are O(1) amortised; counts are maintained, not
recounted. Only latency percentiles need a sort, and only for rules that use them.
"""

from __future__ import annotations

import math
from collections import deque
from typing import NamedTuple

from detector.expr import LATENCY_METRICS


class Entry(NamedTuple):
    at: float
    ok: bool
    latency_s: float | None
    market: str | None


class Window:
    __slots__ = ("consecutive_failures", "entries", "failures")

    def __init__(self) -> None:
        self.entries: deque[Entry] = deque()
        self.failures = 0
        self.consecutive_failures = 0  # failures at the newest end, unbroken by an ok

    def __len__(self) -> int:
        return len(self.entries)

    def add(self, entry: Entry) -> None:
        entries = self.entries
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
        while entries and entries[0].at <= horizon:
            if not entries.popleft().ok:
                self.failures -= 1
        if self.consecutive_failures > len(entries):
            self.consecutive_failures = len(entries)

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
        if names & LATENCY_METRICS:
            values.update(latency_percentiles(self.entries))
        return values

    def failed_markets(self) -> tuple[str, ...]:
        return tuple(sorted({e.market for e in self.entries if not e.ok and e.market}))


def latency_percentiles(entries: deque[Entry]) -> dict[str, float]:
    """Nearest-rank percentiles over the results that carry a latency (0 when none do)."""
    latencies = sorted(e.latency_s for e in entries if e.latency_s is not None)
    if not latencies:
        return {"latency_p50": 0.0, "latency_p95": 0.0, "latency_p99": 0.0, "latency_max": 0.0}
    count = len(latencies)

    def rank(q: float) -> float:
        return latencies[max(0, math.ceil(q * count) - 1)]

    return {
        "latency_p50": rank(0.50),
        "latency_p95": rank(0.95),
        "latency_p99": rank(0.99),
        "latency_max": latencies[-1],
    }
