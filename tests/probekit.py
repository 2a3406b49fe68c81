"""What the probe tests share: credentials the sandbox accepts, a spec for any kind against
any target, one run through the real runner, and a server that never answers.
The fixtures (probe_sandbox, session, log, log_output) are in conftest.py."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer
from structlog.typing import FilteringBoundLogger

from detector.clock import Clock, SystemClock
from detector.model import ProbeResult
from probes import Credentials, ProbeSpec, run_probe

USERNAME, PASSWORD = "probe-user-5f2c", "s3cr3t-pass-9a7e"
CREDENTIALS = Credentials.model_validate({"username": USERNAME, "password": PASSWORD})

# One healthy configuration of every kind: (kind, component, spec fields).
GREEN = [
    ("label_creation", "carriers/dhl", {"labels": {"market": "DE"}}),
    ("label_creation", "carriers/new_carrier", {}),
    (
        "order_import",
        "integrations/shopify",
        {"settings": {"poll_interval": "50ms", "max_lag": "2s"}},
    ),
    ("http", "sendcloud/api", {"settings": {"expect_json": {"user.username": USERNAME}}}),
    ("http", "sendcloud/panel", {"settings": {"path": "/panel/", "expect_body": "Sendcloud"}}),
    ("tracking", "carriers/dhl", {"labels": {"market": "DE"}}),
    ("tracking", "sendcloud/tracking", {"settings": {"carrier": "postnl"}}),
]


def make_spec(server: TestServer | str, kind: str, component: str, **fields: Any) -> ProbeSpec:
    target = server if isinstance(server, str) else str(server.make_url(""))
    values = {"id": f"{kind}-test", "kind": kind, "component": component, "target": target}
    return ProbeSpec.model_validate({"credentials": CREDENTIALS, **values, **fields})


async def probe(
    spec: ProbeSpec,
    session: aiohttp.ClientSession,
    log: FilteringBoundLogger,
    clock: Clock | None = None,
) -> ProbeResult:
    return await run_probe(spec, session=session, log=log, clock=clock or SystemClock())


@contextlib.asynccontextmanager
async def hung_server() -> AsyncIterator[str]:
    """A raw TCP server that accepts and reads, and never answers; yields its URL."""

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(1024):
            pass
        writer.close()

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
