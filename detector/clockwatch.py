"""Watching the wall clock for steps (NTP corrections, a VM resumed, an operator's `date -s`).

Scheduling and durations run on monotonic time, timestamps on wall time. APScheduler 3 keeps
its next run times in wall time, so after the wall clock steps back an hour every job would
wait that hour. Every `period` seconds the watch compares how far the wall clock moved with
how far the monotonic clock moved; a difference over `threshold` seconds is a step: it is
logged (`clock_stepped`) and `on_step` rebuilds the schedule.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from structlog.typing import FilteringBoundLogger

from detector.clock import Clock

Monotonic = Callable[[], float]


class ClockWatch:
    def __init__(
        self,
        clock: Clock,
        monotonic: Monotonic | None,
        *,
        on_step: Callable[[float], None],
        log: FilteringBoundLogger,
        period: float = 5.0,
        threshold: float = 2.0,
    ) -> None:
        self.clock = clock
        self.monotonic: Monotonic = monotonic or time.monotonic
        self.on_step = on_step
        self.log = log
        self.period = period
        self.threshold = threshold
        self._last = (self.clock.now(), self.monotonic())
        self._task: asyncio.Task[None] | None = None

    def check(self) -> float:
        """The step since the last check in seconds (0.0 when none); calls `on_step`."""
        wall, mono = self.clock.now(), self.monotonic()
        last_wall, last_mono = self._last
        self._last = (wall, mono)
        step = (wall - last_wall) - (mono - last_mono)
        if abs(step) <= self.threshold:
            return 0.0
        self.log.warning("clock_stepped", seconds=round(step, 3))
        self.on_step(step)
        return step

    def start(self) -> None:
        self._last = (self.clock.now(), self.monotonic())
        self._task = asyncio.get_running_loop().create_task(self._watch(), name="clock-watch")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.period)  # the event loop's clock is monotonic
            try:
                self.check()
            except Exception:  # a failed reschedule must not end the watch
                self.log.exception("clock_watch_failed")
