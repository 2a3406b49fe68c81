"""The injected clock. Nothing below the daemon shell reads the wall clock itself."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the Unix epoch."""
        ...


class SystemClock:
    def now(self) -> float:
        return time.time()


class ManualClock:
    """A clock tests move by hand: a 30-minute rule runs in milliseconds."""

    def __init__(self, start: float = 1_795_860_000.0) -> None:  # 2026-11-28T10:00:00Z
        self._now = start

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> float:
        self._now += seconds
        return self._now

    def set(self, moment: float) -> None:
        self._now = moment
