"""`http`: one request to a platform feature (API, panel, ...) with blackbox-style checks.

Checks, in order: the status code is one of `expected_status`, every `expect_json` entry (a
dotted path into the JSON body, e.g. `user.username`) equals its value, the body contains
`expect_body`, and the request took no longer than `max_latency`. A failed check names the
value it saw: `json status = 'down', expected 'ok'`, `latency 6.2s > 5s`.
"""

from __future__ import annotations

import time
from typing import Any, Literal

import aiohttp
from pydantic import Field
from structlog.typing import FilteringBoundLogger
from yarl import URL

from detector.clock import Clock
from detector.model import ProbeResult
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

JsonScalar = str | int | float | bool | None
_MISSING = object()


class HttpOptions(ProbeOptions):
    method: Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] = "GET"
    path: str = "/api/v2/user"  # or an absolute URL
    expected_status: list[int] = Field(default_factory=lambda: [200], min_length=1)
    headers: dict[str, str] = Field(default_factory=dict)
    body: dict[str, Any] | None = None  # sent as JSON
    send_credentials: bool = True
    expect_json: dict[str, JsonScalar] = Field(default_factory=dict)
    expect_body: str | None = None
    max_latency: Duration | None = None


async def probe(
    spec: ProbeSpec,
    *,
    session: aiohttp.ClientSession,
    log: FilteringBoundLogger,
    clock: Clock,
) -> ProbeResult:
    options = options_of(spec, HttpOptions)
    headers = {**options.headers, **(auth_headers(spec) if options.send_credentials else {})}
    started = time.perf_counter()
    async with session.request(
        options.method, _url(spec, options.path), headers=headers, json=options.body
    ) as resp:
        await expect_status(resp, options.expected_status)
        if options.expect_json:
            _check_json(await read_json(resp), options.expect_json)
        if options.expect_body is not None:
            text = await resp.text(errors="replace")
            if options.expect_body not in text:
                raise ProbeFailed(f"body does not contain {options.expect_body!r}")
        else:
            await resp.read()  # the whole answer is part of the latency the user sees
    latency = time.perf_counter() - started
    if options.max_latency is not None and latency > options.max_latency:
        shown = f"{latency:.1f}" if latency >= 1 else f"{latency:.3f}"
        raise ProbeFailed(f"latency {shown}s > {options.max_latency:g}s")
    return passed(spec, clock)


# Parsed URLs by (target, path). aiohttp parses a string URL on every request (~7 µs) and
# yarl's own cache is smaller than a fleet of probes; a probe's URL never changes.
_URLS: dict[tuple[str, str], URL] = {}
_MAX_URLS = 100_000  # reloads may retire URLs: start afresh rather than grow without end


def _url(spec: ProbeSpec, path: str) -> URL:
    key = (spec.target, path)
    url = _URLS.get(key)
    if url is None:
        if len(_URLS) >= _MAX_URLS:
            _URLS.clear()
        url = _URLS[key] = URL(spec.url(path))
    return url


def _check_json(body: Any, expected: dict[str, JsonScalar]) -> None:
    for path, want in expected.items():
        seen = _lookup(body, path)
        if seen is _MISSING:
            raise ProbeFailed(f"json {path} missing, expected {want!r}")
        if seen != want:
            raise ProbeFailed(f"json {path} = {seen!r}, expected {want!r}")


def _lookup(body: Any, path: str) -> Any:
    """`data.0.status` -> body["data"][0]["status"]; _MISSING when any step is absent."""
    for key in path.split("."):
        if isinstance(body, dict) and key in body:
            body = body[key]
        elif isinstance(body, list) and key.isdigit() and int(key) < len(body):
            body = body[int(key)]
        else:
            return _MISSING
    return body
