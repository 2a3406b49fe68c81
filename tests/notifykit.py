"""Loopback receivers for notification tests: a recording aiohttp server whose answers a test
scripts (status, Retry-After, a hang), and the detector values a notification is about."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
import structlog
from aiohttp import web
from aiohttp.test_utils import TestServer
from structlog.typing import FilteringBoundLogger

from detector.clock import ManualClock
from detector.metrics import Metrics
from detector.model import (
    ComponentStatus,
    Incident,
    IncidentOpened,
    IncidentResolved,
    IncidentStatus,
    IncidentUpdate,
    IncidentUpdated,
)
from detector.notify.config import Channel
from detector.notify.dispatcher import Dispatcher
from detector.store import SqlStore

T0 = 1_795_860_000.0


@dataclass
class Answer:
    status: int = 200
    body: Any = "ok"
    headers: Mapping[str, str] = field(default_factory=dict)
    hang: bool = False


@dataclass
class Received:
    method: str
    path: str
    headers: Mapping[str, str]
    raw: bytes

    @property
    def json(self) -> Any:
        return orjson.loads(self.raw)


class Receiver:
    """Records every request; answers from `script` in order, then `default`."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.script: list[Answer] = []
        self.default = Answer()
        self.released = asyncio.Event()  # a hanging answer waits for this
        self.server: TestServer | None = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        self.requests.append(Received(request.method, request.path, dict(request.headers), raw))
        answer = self.script.pop(0) if self.script else self.default
        if answer.hang:
            await self.released.wait()
        body = answer.body if isinstance(answer.body, str) else orjson.dumps(answer.body).decode()
        return web.Response(status=answer.status, text=body, headers=answer.headers)

    @property
    def url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("/hook"))

    @property
    def base(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("")).rstrip("/")

    def bodies(self) -> list[Any]:
        return [r.json for r in self.requests if r.raw]  # a GET carries none


async def start_receiver() -> Receiver:
    receiver = Receiver()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", receiver.handle)
    receiver.server = TestServer(app, host="127.0.0.1")
    await receiver.server.start_server()
    return receiver


async def stop_receiver(receiver: Receiver) -> None:
    receiver.released.set()
    assert receiver.server is not None
    await receiver.server.close()


def quiet_log() -> FilteringBoundLogger:
    logger: FilteringBoundLogger = structlog.wrap_logger(
        structlog.PrintLogger(io.StringIO()),
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        processors=[structlog.processors.JSONRenderer()],
    )
    return logger


def channel(**fields: Any) -> Channel:
    return Channel.model_validate(fields)


def make_dispatcher(
    store: SqlStore,
    channels: list[Channel],
    session: aiohttp.ClientSession,
    clock: ManualClock,
    metrics: Metrics | None = None,
    **options: Any,
) -> Dispatcher:
    return Dispatcher(
        store,
        channels,
        session=session,
        clock=clock,
        metrics=metrics or Metrics("test"),
        log=quiet_log(),
        link="https://status.example.com",
        **options,
    )


async def settle(dispatcher: Dispatcher, rounds: int = 5) -> None:
    """Steps until nothing is in flight (each finished attempt may free a subject's next)."""
    for _ in range(rounds):
        await dispatcher.step()
        await dispatcher.drain()


def incident(
    incident_id: str = "inc-1", component: str = "carriers/dhl", opened_at: float = T0
) -> Incident:
    return Incident(
        id=incident_id,
        rule="carrier-label-creation",
        component=component,
        title="DHL: label creation failing in Germany",
        cause="sustained",
        deploy=None,
        impact=ComponentStatus.MAJOR_OUTAGE,
        status=IncidentStatus.INVESTIGATING,
        component_status=ComponentStatus.MAJOR_OUTAGE,
        opened_at=opened_at,
        updates=[
            IncidentUpdate(
                at=opened_at,
                status=IncidentStatus.INVESTIGATING,
                component_status=ComponentStatus.MAJOR_OUTAGE,
                body="We are investigating problems creating labels with DHL in Germany.",
                evidence="error_ratio (1) >= 0.9",
            )
        ],
        markets=("DE",),
        started_at=opened_at - 1800,
    )


def opened(inc: Incident) -> IncidentOpened:
    return IncidentOpened(inc)


def updated(inc: Incident, at: float, status: IncidentStatus, *, public: bool = True
            ) -> IncidentUpdated:  # fmt: skip
    update = IncidentUpdate(
        at=at,
        status=status,
        component_status=inc.component_status,
        body=f"Update: {status}.",
        evidence="error_ratio (0.5) >= 0.3",
        public=public,
    )
    inc.updates.append(update)
    inc.status = status
    return IncidentUpdated(inc, update)


def resolved(inc: Incident, at: float) -> IncidentResolved:
    update = IncidentUpdate(
        at=at,
        status=IncidentStatus.RESOLVED,
        component_status=ComponentStatus.OPERATIONAL,
        body="This incident has been resolved.",
        evidence="stable for 10m",
    )
    inc.updates.append(update)
    inc.status = IncidentStatus.RESOLVED
    inc.component_status = ComponentStatus.OPERATIONAL
    inc.resolved_at = at
    return IncidentResolved(inc, update)


async def receivers(count: int) -> AsyncIterator[list[Receiver]]:
    started = [await start_receiver() for _ in range(count)]
    try:
        yield started
    finally:
        for receiver in started:
            await stop_receiver(receiver)
