"""Where runs fall in time: a fixed phase per probe, and the APScheduler jobs of the daemon."""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from probes.base import ProbeSpec


def probe_phase(spec: ProbeSpec, now: float) -> float:
    """The probe's next run: at a fixed offset within its interval, taken from its id.

    10,000 probes spread evenly over the minute instead of bursting together, and the
    schedule is the same after a restart or a reload (no burst on SIGHUP either).
    """
    offset = zlib.crc32(spec.id.encode()) / 2**32 * spec.interval
    return now + (offset - now) % spec.interval


def schedule_probes(
    scheduler: AsyncIOScheduler,
    job: Callable[[ProbeSpec], Any],
    specs: Sequence[ProbeSpec],
    now: float,
    *,
    prefix: str,
) -> None:
    """One interval job per probe, ids `<prefix>:<probe id>`, each at its own phase."""
    for spec in specs:
        first = probe_phase(spec, now)
        scheduler.add_job(
            job,
            IntervalTrigger(
                seconds=spec.interval, start_date=datetime.fromtimestamp(first, tz=UTC)
            ),
            args=[spec],
            id=f"{prefix}:{spec.id}",
            max_instances=1,
            coalesce=True,
            misfire_grace_time=max(1, int(spec.interval)),
            replace_existing=True,
        )


def schedule_periodic(
    scheduler: AsyncIOScheduler,
    jobs: Sequence[tuple[str, Callable[[], Any], float]],
    now: float,
) -> None:
    """The daemon's own interval jobs, `(id, job, seconds)`, each first due one interval on."""
    for job_id, job, seconds in jobs:
        start = datetime.fromtimestamp(now + seconds, tz=UTC)
        scheduler.add_job(
            job,
            IntervalTrigger(seconds=seconds, start_date=start),
            id=job_id,
            max_instances=1,
            coalesce=True,
            replace_existing=True,
        )


def schedule_once(
    scheduler: AsyncIOScheduler, job: Callable[[], Any], at: float, job_id: str
) -> None:
    """`job` once at `at`, replacing the pending one of that id (a deadline moves, not adds)."""
    scheduler.add_job(
        job,
        DateTrigger(run_date=datetime.fromtimestamp(at, tz=UTC)),
        id=job_id,
        replace_existing=True,
        misfire_grace_time=60,
    )
