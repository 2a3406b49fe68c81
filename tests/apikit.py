"""What the HTTP API tests share: a real aiohttp server on loopback, a real SQLite file store,
and a small real Control that records into that store (the daemon's job in production).

Test modules import the fixtures they use by name."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from detector.clock import ManualClock
from detector.metrics import Metrics
from detector.model import (
    ComponentStatus,
    Deploy,
    Incident,
    IncidentOpened,
    IncidentStatus,
    IncidentUpdate,
    Maintenance,
)
from detector.store.base import ComponentRecord
from detector.store.sql import SqlStore
from detector.web.app import make_app

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
NOW = 1_795_860_000.0  # 2026-11-28T10:00:00Z
MAJOR = ComponentStatus.MAJOR_OUTAGE

ClientFactory = Callable[..., Awaitable[TestClient[web.Request, web.Application]]]
Client = TestClient[web.Request, web.Application]

COMPONENTS = [
    ComponentRecord("sendcloud/api", "API", "sendcloud", "Public API", ComponentStatus.OPERATIONAL,
                    0, NOW - 600),
    ComponentRecord("carriers/dhl", "DHL", "carriers", "", ComponentStatus.OPERATIONAL, 1, NOW),
    ComponentRecord("carriers/ups", "UPS", "carriers", "", ComponentStatus.OPERATIONAL, 2, NOW),
    ComponentRecord("integrations/shopify", "Shopify", "integrations", "",
                    ComponentStatus.OPERATIONAL, 3, NOW),
]  # fmt: skip


class StoreControl:
    """The daemon's side of the write API, reduced to recording into the store."""

    def __init__(self, store: SqlStore, clock: ManualClock) -> None:
        self.store, self.clock = store, clock
        self.checks = {"store": True, "rules": True, "scheduler": True}
        self.reload_answer = (True, "2 rule files, 5 rules")
        self.reloads = 0

    async def record_deploy(self, deploy: Deploy) -> Deploy:
        await asyncio.to_thread(self.store.add_deploy, deploy)
        return deploy

    async def flag_deploy_bad(self, deploy_id: str) -> Deploy:
        return await asyncio.to_thread(self.store.flag_deploy_bad, deploy_id, self.clock.now())

    async def update_incident(
        self, incident_id: str, status: IncidentStatus, body: str
    ) -> IncidentUpdate:
        incident = await asyncio.to_thread(self.store.get_incident, incident_id)
        if incident.status is IncidentStatus.RESOLVED and status is not IncidentStatus.RESOLVED:
            raise ValueError("already resolved")
        add = self.store.add_incident_update
        return await asyncio.to_thread(add, incident_id, status, body, self.clock.now())

    async def add_maintenance(self, m: Maintenance) -> Maintenance:
        return await asyncio.to_thread(self.store.add_maintenance, m)

    async def cancel_maintenance(self, maintenance_id: str) -> None:
        await asyncio.to_thread(self.store.cancel_maintenance, maintenance_id, self.clock.now())

    async def reload(self) -> tuple[bool, str]:
        self.reloads += 1
        return self.reload_answer

    def readiness(self) -> Mapping[str, bool]:
        return dict(self.checks)


def open_incident(
    incident_id: str = "inc-1", component: str = "carriers/dhl", title: str = "DHL: failing (DE)"
) -> Incident:
    update = IncidentUpdate(NOW - 1800, IncidentStatus.INVESTIGATING, MAJOR, "Labels fail.")
    return Incident(
        id=incident_id, rule="carrier-label-creation", component=component, title=title,
        cause="sustained", deploy=None, impact=MAJOR, status=IncidentStatus.INVESTIGATING,
        component_status=MAJOR, opened_at=NOW - 1800, updates=[update], markets=("DE",),
    )  # fmt: skip


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(NOW)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlStore]:
    sql = SqlStore(f"sqlite:///{tmp_path / 'detector.db'}")
    sql.create_schema()
    sql.sync_components(COMPONENTS)
    yield sql
    sql.close()


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(version="test")


@pytest.fixture
def control(store: SqlStore, clock: ManualClock) -> StoreControl:
    return StoreControl(store, clock)


@pytest.fixture
def make_client(
    aiohttp_client: Callable[[web.Application], Awaitable[Client]],
    store: SqlStore,
    control: StoreControl,
    metrics: Metrics,
    clock: ManualClock,
) -> ClientFactory:
    async def make(**overrides: Any) -> Client:
        options: dict[str, Any] = {
            "store": store, "control": control, "metrics": metrics, "clock": clock,
            "token": TOKEN, "page_name": "Sendcloud status",
        }  # fmt: skip
        options.update(overrides)
        return await aiohttp_client(make_app(**options))

    return make


@pytest.fixture
async def client(make_client: ClientFactory) -> AsyncIterator[Client]:
    yield await make_client()


def commit(store: SqlStore, *incidents: Incident) -> None:
    statuses = {incident.component: incident.component_status for incident in incidents}
    decisions = [IncidentOpened(incident) for incident in incidents]
    store.commit_engine(decisions, {}, statuses, NOW - 1800)


FIXTURES = (client, make_client, store, control, clock, metrics)
