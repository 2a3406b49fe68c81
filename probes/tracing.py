"""Phase timings (`ProbeResult.phases`) and the two HTTP sessions that decide who pays for them.

aiohttp's trace machinery costs ~10-20 µs a request (a `Trace` object per config and a
signal send per hook), even when the hooks do little: on a healthy fast run that is a
fifth of the whole probe path. So `ProbeSessions` runs a probe on an untraced session
while its runs are healthy, and on a traced one (same connector: same pool, no extra
sockets) for the run after one that failed or was slow. Phases are therefore empty on a
healthy fast run, and present on every run of a probe that keeps failing or stays slow
except the first (nobody knows in advance that a run will fail).
"""

from __future__ import annotations

import contextvars
import time
from types import SimpleNamespace
from typing import TYPE_CHECKING

import aiohttp

if TYPE_CHECKING:
    from detector.model import ProbeResult
    from probes.base import ProbeSpec

# A run this share of its timeout or slower is slow: its probe's next run is traced.
SLOW_SHARE = 0.25
# Every request on these sessions is bounded by a hard timeout of its own (run_probe's, a
# cleanup step's, a notification's), so aiohttp's 5-minute default total - one more timer
# pushed and cancelled on every request - is dropped. Connecting keeps its own bound.
PROBE_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=30)


class ProbeSessions:
    """The daemon's HTTP sessions over one connector: `plain` (untraced, owns the connector;
    notifications use it too) and `traced` (phase timings). `session_for` picks a run's."""

    def __init__(self, connector: aiohttp.BaseConnector | None = None) -> None:
        connector = connector or aiohttp.TCPConnector(limit=0, ttl_dns_cache=300)
        self.plain = aiohttp.ClientSession(connector=connector, timeout=PROBE_TIMEOUT)
        self.traced = aiohttp.ClientSession(
            connector=connector,
            connector_owner=False,  # closing `plain` closes the pool, and `traced` with it
            timeout=PROBE_TIMEOUT,
            trace_configs=[trace_config()],
        )
        self.watched: set[str] = set()  # probes whose last run failed or was slow

    def session_for(self, spec: ProbeSpec) -> aiohttp.ClientSession:
        return self.traced if spec.id in self.watched else self.plain

    def settle(self, spec: ProbeSpec, result: ProbeResult) -> None:
        """Note how a run went: it decides whether the probe's next run is traced."""
        latency = result.latency_s
        if not result.ok or (latency is not None and latency >= spec.timeout * SLOW_SHARE):
            self.watched.add(spec.id)
        elif self.watched:
            self.watched.discard(spec.id)

    def retain(self, probe_ids: set[str]) -> None:
        """Forget probes no longer configured (after a reload)."""
        self.watched &= probe_ids

    async def close(self) -> None:
        await self.traced.close()
        await self.plain.close()


# The phase totals of the probe run in progress. A context variable, because the trace
# callbacks run inside the probe's own task (and tasks it spawns copy the context).
PHASES: contextvars.ContextVar[dict[str, float] | None] = contextvars.ContextVar(
    "probe_phases", default=None
)


def trace_config() -> aiohttp.TraceConfig:
    """Attach to the session (`ClientSession(trace_configs=[trace_config()])`) to get
    `ProbeResult.phases`: seconds spent in `dns`, `connect` (TCP/TLS, without dns),
    `request` (queueing for a connection and sending headers) and `first_byte` (headers sent
    until the response headers arrived), summed over the requests of one run."""
    config = aiohttp.TraceConfig()
    config.on_request_start.append(_request_start)
    config.on_dns_resolvehost_start.append(_dns_start)
    config.on_dns_resolvehost_end.append(_dns_end)
    config.on_connection_create_start.append(_connect_start)
    config.on_connection_create_end.append(_connect_end)
    config.on_request_headers_sent.append(_headers_sent)
    config.on_request_end.append(_request_end)
    config.on_request_exception.append(_request_end)
    return config


async def _request_start(_: aiohttp.ClientSession, ctx: SimpleNamespace, __: object) -> None:
    ctx.started = ctx.sent = time.perf_counter()
    ctx.dns = ctx.connect = 0.0


async def _dns_start(_: aiohttp.ClientSession, ctx: SimpleNamespace, __: object) -> None:
    ctx.dns_started = time.perf_counter()


async def _dns_end(_: aiohttp.ClientSession, ctx: SimpleNamespace, __: object) -> None:
    ctx.dns += time.perf_counter() - ctx.dns_started


async def _connect_start(_: aiohttp.ClientSession, ctx: SimpleNamespace, __: object) -> None:
    ctx.connect_started = time.perf_counter()


async def _connect_end(_: aiohttp.ClientSession, ctx: SimpleNamespace, __: object) -> None:
    ctx.connect += time.perf_counter() - ctx.connect_started


async def _headers_sent(_: aiohttp.ClientSession, ctx: SimpleNamespace, __: object) -> None:
    ctx.sent = time.perf_counter()


async def _request_end(_: aiohttp.ClientSession, ctx: SimpleNamespace, __: object) -> None:
    phases = PHASES.get()
    if phases is None or not hasattr(ctx, "started"):
        return
    now = time.perf_counter()
    # Connection setup includes resolving the host; report the two apart.
    spent = {
        "dns": ctx.dns,
        "connect": max(ctx.connect - ctx.dns, 0.0),
        "request": max(ctx.sent - ctx.started - ctx.connect, 0.0),
        "first_byte": now - ctx.sent,
    }
    for phase, seconds in spent.items():
        phases[phase] = phases.get(phase, 0.0) + seconds
