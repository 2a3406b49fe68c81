"""`tracking`: are a carrier's tracking updates still flowing, and are they healthy?

Reads the tracking feed (newest updates first, with `last_update_at`) for one carrier and
market. Fails when the newest update is older than `max_lag` - the carrier stopped sending
status updates - or when an update carries a failure status such as "Announcement failed".
"""

from __future__ import annotations

from typing import Any

import aiohttp
from pydantic import Field
from structlog.typing import FilteringBoundLogger

from detector.clock import Clock
from detector.model import ProbeResult
from detector.timeutil import TimeFormatError, format_duration, parse_time
from probes.base import (
    Duration,
    ProbeFailed,
    ProbeOptions,
    ProbeSpec,
    auth_headers,
    expect_status,
    options_of,
    passed,
    read_json,
)


class TrackingOptions(ProbeOptions):
    path: str = "/tracking/{carrier}"
    carrier: str | None = None  # default: the component's slug; required for sendcloud/…
    country: str | None = Field(default=None, pattern=r"^[A-Z]{2}$")  # default: `market` label
    max_lag: Duration = 600.0
    failure_statuses: list[str] = Field(default_factory=lambda: ["Announcement failed"])


async def probe(
    spec: ProbeSpec,
    *,
    session: aiohttp.ClientSession,
    log: FilteringBoundLogger,
    clock: Clock,
) -> ProbeResult:
    options = options_of(spec, TrackingOptions)
    carrier = options.carrier or (spec.slug if spec.component.startswith("carriers/") else None)
    if carrier is None:
        raise ProbeFailed(f"settings.carrier is required for component {spec.component}")
    country = options.country or spec.labels.get("market")
    params = {"country": country.upper()} if country else {}
    url = spec.url(options.path, carrier=carrier)
    async with session.get(url, params=params, headers=auth_headers(spec)) as resp:
        await expect_status(resp)
        feed = await read_json(resp)
    if not isinstance(feed, dict):
        raise ProbeFailed(f"tracking feed {resp.url.path} is not a JSON object")
    _check_lag(feed, options, clock)
    _check_statuses(feed, options)
    return passed(spec, clock)


def _check_lag(feed: dict[str, Any], options: TrackingOptions, clock: Clock) -> None:
    last_update = feed.get("last_update_at")
    if not isinstance(last_update, str):
        raise ProbeFailed("tracking feed has no last_update_at")
    try:
        lag = clock.now() - parse_time(last_update)
    except TimeFormatError as exc:
        raise ProbeFailed(f"tracking feed: {exc}") from None
    if lag > options.max_lag:
        limit = format_duration(options.max_lag)
        raise ProbeFailed(
            f"tracking lag {format_duration(lag)} > {limit} (last update {last_update})"
        )


def _check_statuses(feed: dict[str, Any], options: TrackingOptions) -> None:
    updates = feed.get("updates")
    if not isinstance(updates, list) or not options.failure_statuses:
        return
    statuses = [u.get("status") for u in updates if isinstance(u, dict)]
    for bad in options.failure_statuses:
        count = statuses.count(bad)
        if count:
            raise ProbeFailed(f"{bad!r} in {count} of {len(statuses)} updates")
