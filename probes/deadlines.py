"""Hard timeouts for many probe runs on one loop timer per timeout value.

`asyncio.timeout` pushes a timer onto the event loop's heap for every run (a Python-level
comparison per heap level) and cancels it when the run ends; the cancelled timers stay in the
heap until it is rebuilt. That was ~3 µs a run. Runs with the same timeout expire in the order
they started, so here each timeout value keeps its runs in a FIFO and arms one timer, for the
oldest run still going: starting a run is an append, finishing it sets a flag, and the timer
wakes about once per timeout to drop finished runs and cancel the overdue ones.

The expiry works like `asyncio.timeout`'s: the run's task is cancelled, and `Deadline.exit`
turns that cancellation (and only that one) into `TimeoutError`.
"""

from __future__ import annotations

import asyncio
from collections import deque


class Deadline:
    """One run's hard timeout; `start` it, then `exit` it from a `finally` or an `except`."""

    __slots__ = ("at", "cancelling", "done", "expired", "task")

    def __init__(self, at: float, task: asyncio.Task[object]) -> None:
        self.at = at
        self.task: asyncio.Task[object] | None = task
        self.cancelling = task.cancelling()  # cancellations requested before this run
        self.expired = False
        self.done = False

    def exit(self, exc: BaseException | None) -> None:
        """The run ended (with `exc` if it raised). Raises TimeoutError if the run was
        cancelled because it expired, as `asyncio.timeout` does."""
        self.done = True
        task, self.task = self.task, None
        if not self.expired or task is None:
            return
        # Undo our cancel; any other cancellation (shutdown) still propagates.
        if task.uncancel() <= self.cancelling and isinstance(exc, asyncio.CancelledError):
            raise TimeoutError from exc


class _Queue:
    """The runs of one timeout value, oldest first, and the timer armed for the oldest."""

    __slots__ = ("runs", "timer")

    def __init__(self) -> None:
        self.runs: deque[Deadline] = deque()
        self.timer: asyncio.TimerHandle | None = None


class Deadlines:
    """The hard timeouts of one event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._queues: dict[float, _Queue] = {}

    def start(self, timeout: float) -> Deadline:
        task = asyncio.current_task(self.loop)
        if task is None:
            raise RuntimeError("a deadline needs a task to cancel")
        queue = self._queues.get(timeout)
        if queue is None:
            queue = self._queues[timeout] = _Queue()
        runs = queue.runs
        while runs and runs[0].done:  # keeps the FIFO as short as the runs in flight
            runs.popleft()
        run = Deadline(self.loop.time() + timeout, task)
        runs.append(run)
        if queue.timer is None:
            queue.timer = self.loop.call_at(run.at, self._wake, queue)
        return run

    def _wake(self, queue: _Queue) -> None:
        queue.timer = None
        runs, now = queue.runs, self.loop.time()
        while runs and (runs[0].done or runs[0].at <= now):
            run = runs.popleft()
            if not run.done and run.task is not None:
                run.expired = True
                run.task.cancel()
        if runs:
            queue.timer = self.loop.call_at(runs[0].at, self._wake, queue)


_CURRENT: Deadlines | None = None


def start(timeout: float) -> Deadline:
    """A hard timeout of `timeout` seconds for the current task, on the running loop."""
    global _CURRENT
    loop = asyncio.get_running_loop()
    deadlines = _CURRENT
    if deadlines is None or deadlines.loop is not loop:  # each test has a loop of its own
        deadlines = _CURRENT = Deadlines(loop)
    return deadlines.start(timeout)
