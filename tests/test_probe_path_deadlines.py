"""The probe runs' hard timeouts (probes/deadlines.py): one loop timer per timeout value, the
semantics of `asyncio.timeout`. Timeouts here are tens of milliseconds of real time: the
point is what gets cancelled when, on a real event loop."""

from __future__ import annotations

import asyncio
import time

import pytest

from probes import deadlines


async def hang(timeout: float, log: list[tuple[str, float]], name: str) -> None:
    """A run that never finishes by itself, under a deadline; logs when it timed out."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    deadline = deadlines.start(timeout)
    try:
        await asyncio.Event().wait()
    except BaseException as exc:
        try:
            deadline.exit(exc)
        except TimeoutError:
            log.append((name, loop.time() - started))
            return
        raise


async def test_each_run_expires_at_its_own_deadline_in_any_order() -> None:
    log: list[tuple[str, float]] = []
    slow = asyncio.create_task(hang(0.15, log, "slow"))
    await asyncio.sleep(0.01)
    first = asyncio.create_task(hang(0.05, log, "first"))
    await asyncio.sleep(0.01)
    second = asyncio.create_task(hang(0.05, log, "second"))
    await asyncio.gather(slow, first, second)
    assert [name for name, _ in log] == ["first", "second", "slow"]
    for name, waited in log:  # never early; late only by what a loaded machine adds
        timeout = 0.15 if name == "slow" else 0.05
        assert timeout - 0.001 <= waited < timeout + 0.5


async def test_a_finished_run_never_cancels_its_task_later() -> None:
    # The same task goes on to other work (a daemon job, a bench loop): the old deadline's
    # timer fires meanwhile and must leave it alone.
    loop = asyncio.get_running_loop()
    for _ in range(3):
        deadline = deadlines.start(0.02)
        await asyncio.sleep(0)
        deadline.exit(None)
    started = loop.time()
    await asyncio.sleep(0.06)  # past every deadline above
    assert loop.time() - started >= 0.05
    current = asyncio.current_task()
    assert current is not None and current.cancelling() == 0


async def test_a_run_that_ends_in_time_leaves_later_runs_their_deadline() -> None:
    log: list[tuple[str, float]] = []
    deadline = deadlines.start(0.05)
    deadline.exit(None)  # the oldest run is done; the timer armed for it must not expire others
    hung = asyncio.create_task(hang(0.05, log, "hung"))
    await hung
    assert log and 0.049 <= log[0][1] < 0.55


async def test_shutdown_cancellation_is_not_a_timeout() -> None:
    log: list[tuple[str, float]] = []
    task = asyncio.create_task(hang(5.0, log, "run"))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert log == []


async def test_a_cancel_that_arrives_with_the_expiry_still_propagates() -> None:
    log: list[tuple[str, float]] = []
    task = asyncio.create_task(hang(0.005, log, "run"))
    await asyncio.sleep(0)  # the run starts and waits
    time.sleep(0.01)  # hold the loop past the deadline: its timer is due ...
    await asyncio.sleep(0)  # ... and fires right after this task resumes, in one iteration
    task.cancel()  # so shutdown's cancel and the expiry both reach the run before it wakes
    with pytest.raises(asyncio.CancelledError):
        await task
    assert log == []


def test_each_event_loop_gets_its_own_timers() -> None:
    # A timer armed on a closed loop would never fire: a new loop must start afresh.
    for _ in range(2):
        log: list[tuple[str, float]] = []
        asyncio.run(hang(0.02, log, "run"))
        assert [name for name, _ in log] == ["run"]
