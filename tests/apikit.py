"""What the HTTP API tests share: the components a real SQLite file store holds, a small real
Control that records into that store (the daemon's job in production), and the token.
The fixtures over them (store, control, make_client, client) are in conftest.py."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web
from aiohttp.test_utils import TestClient
from factories import T0, make_incident

from detector.clock import ManualClock
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

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
NOW = T0  # 2026-11-28T10:00:00Z
MAJOR = ComponentStatus.MAJOR_OUTAGE
# Every Statuspage v2 read, then every public read (the page too).
V2_PATHS = [
    "/api/v2/summary.json",
    "/api/v2/status.json",
    "/api/v2/components.json",
    "/api/v2/incidents.json",
    "/api/v2/incidents/unresolved.json",
    "/api/v2/scheduled-maintenances.json",
    "/api/v2/scheduled-maintenances/upcoming.json",
    "/api/v2/scheduled-maintenances/active.json",
]
PUBLIC_PATHS = ["/", *V2_PATHS]

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

    async def open_incident(
        self,
        component: str,
        status: IncidentStatus,
        component_status: ComponentStatus,
        title: str,
        body: str,
    ) -> Incident:
        incident = make_incident(
            f"manual-{component}", self.clock.now(), component=component, title=title,
            status=status, impact=component_status, body=body,
        )  # fmt: skip
        statuses = {component: component_status}
        decisions = [IncidentOpened(incident)]
        await asyncio.to_thread(self.store.commit_engine, decisions, {}, statuses, self.clock.now())
        return incident

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
    """The open incident the API tests read: opened half an hour before NOW."""
    return make_incident(incident_id, NOW - 1800, component=component, title=title)


def commit(store: SqlStore, *incidents: Incident) -> None:
    statuses = {incident.component: incident.component_status for incident in incidents}
    decisions = [IncidentOpened(incident) for incident in incidents]
    store.commit_engine(decisions, {}, statuses, NOW - 1800)
