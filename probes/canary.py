"""`canary`: a check of something outside the platform, for the daemon's self-check.

`check: http` GETs the target and passes on any answer below 500 (the network works);
`check: dns` resolves the target's host name (the resolver works). Canaries are configured
under `self_check:`, never under `probes:`; rules never see their results.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Literal

import aiohttp
from structlog.typing import FilteringBoundLogger
from yarl import URL

from detector.clock import Clock
from detector.model import ProbeResult
from probes.base import ProbeFailed, ProbeOptions, ProbeSpec, options_of, passed

KIND = "canary"
COMPONENT = "sendcloud/self-check"  # a ProbeSpec needs one; no rule or page shows it


class CanaryOptions(ProbeOptions):
    check: Literal["http", "dns"] = "http"


async def probe(
    spec: ProbeSpec,
    *,
    session: aiohttp.ClientSession,
    log: FilteringBoundLogger,
    clock: Clock,
) -> ProbeResult:
    options = options_of(spec, CanaryOptions)
    if options.check == "dns":
        host = URL(spec.target).host or ""
        loop = asyncio.get_running_loop()
        try:
            await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:  # the resolver answered: no such name, or failed
            raise ProbeFailed(f"cannot resolve {host}: {exc.strerror}") from None
        return passed(spec, clock)
    async with session.get(spec.target, allow_redirects=False) as resp:
        await resp.read()
        if resp.status >= 500:
            raise ProbeFailed(f"HTTP {resp.status} on GET {resp.url.path}")
    return passed(spec, clock)
