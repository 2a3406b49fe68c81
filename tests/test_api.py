"""The HTTP API on loopback: a real aiohttp server, a real SQLite file store, and a small
real Control that records into that store (the daemon's job in production)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

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
from detector.timeutil import format_time
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


# ---------------------------------------------------------------------------- operations


async def test_healthz_and_readyz(client: Client, control: StoreControl) -> None:
    response = await client.get("/healthz")
    assert (response.status, await response.text()) == (200, "ok")
    response = await client.get("/readyz")
    assert response.status == 200
    assert await response.json() == {
        "ready": True,
        "checks": {"store": True, "rules": True, "scheduler": True},
    }
    control.checks["rules"] = False
    response = await client.get("/readyz")
    assert response.status == 503
    assert (await response.json())["checks"]["rules"] is False


async def test_metrics_endpoint(client: Client, metrics: Metrics) -> None:
    metrics.store_error()
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = await response.text()
    families = {family.name for family in text_string_to_metric_families(text)}
    assert {"detector_build_info", "detector_store_errors", "detector_is_leader"} <= families
    assert 'detector_build_info{version="test"} 1.0' in text


async def test_reload(client: Client, control: StoreControl) -> None:
    response = await client.post("/-/reload", headers=AUTH)
    assert response.status == 200
    assert await response.json() == {"status": "reloaded", "message": "2 rule files, 5 rules"}
    control.reload_answer = (False, "rules/carriers.yaml:4: rule 'x': unknown key 'whne'")
    response = await client.post("/-/reload", headers=AUTH)
    assert response.status == 422
    assert await response.json() == {"error": "rules/carriers.yaml:4: rule 'x': unknown key 'whne'"}
    assert control.reloads == 2


# ---------------------------------------------------------------------------- public reads

V2 = [
    "/api/v2/summary.json",
    "/api/v2/status.json",
    "/api/v2/components.json",
    "/api/v2/incidents.json",
    "/api/v2/incidents/unresolved.json",
    "/api/v2/scheduled-maintenances.json",
]
V2_KEYS = [
    {"page", "components", "incidents", "scheduled_maintenances", "status"},
    {"page", "status"},
    {"page", "components"},
    {"page", "incidents"},
    {"page", "incidents"},
    {"page", "scheduled_maintenances"},
]


@pytest.mark.parametrize(("path", "keys"), list(zip(V2, V2_KEYS, strict=True)))
async def test_v2_endpoint_shapes(client: Client, path: str, keys: set[str]) -> None:
    response = await client.get(path)
    assert response.status == 200
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert response.content_type == "application/json"
    payload = await response.json()
    assert set(payload) == keys
    assert set(payload["page"]) == {"id", "name", "url", "time_zone", "updated_at"}
    assert payload["page"]["name"] == "Sendcloud status"
    assert payload["page"]["url"].startswith("http://127.0.0.1:")


async def test_v2_reflects_the_store(client: Client, store: SqlStore) -> None:
    commit(store, open_incident(), open_incident("inc-2", "carriers/ups"))
    store.add_incident_update("inc-2", IncidentStatus.RESOLVED, "Fixed.", NOW - 60)
    store.add_maintenance(Maintenance(NOW + 3600, NOW + 7200, ("carriers/ups",), "UPS work", "m1"))
    summary = await (await client.get("/api/v2/summary.json")).json()
    assert summary["status"] == {"indicator": "critical", "description": "Major Service Outage"}
    assert [i["id"] for i in summary["incidents"]] == ["inc-1"]
    incident = summary["incidents"][0]
    assert (incident["impact"], incident["status"], incident["name"]) == (
        "critical", "investigating", "DHL: failing (DE)",
    )  # fmt: skip
    assert incident["incident_updates"][0]["body"] == "Labels fail."
    assert [m["id"] for m in summary["scheduled_maintenances"]] == ["m1"]
    by_id = {c["id"]: c for c in summary["components"]}
    assert by_id["carriers.dhl"]["status"] == "major_outage"
    assert by_id["carriers"]["group"] is True
    assert by_id["carriers"]["components"] == ["carriers.dhl", "carriers.ups"]
    listed = await (await client.get("/api/v2/incidents.json")).json()
    assert {i["id"] for i in listed["incidents"]} == {"inc-1", "inc-2"}
    resolved = next(i for i in listed["incidents"] if i["id"] == "inc-2")
    assert resolved["resolved_at"] == format_time(NOW - 60)
    unresolved = await (await client.get("/api/v2/incidents/unresolved.json")).json()
    assert [i["id"] for i in unresolved["incidents"]] == ["inc-1"]


async def test_store_failure_is_503_without_traceback(
    client: Client, store: SqlStore, metrics: Metrics
) -> None:
    with store.engine.begin() as connection:
        connection.exec_driver_sql("DROP TABLE components")
    response = await client.get("/api/v2/incidents.json")
    assert response.status == 503
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert await response.json() == {"error": "store unavailable, try again shortly"}
    assert metrics.get("detector_store_errors_total") == 1
    assert (await client.get("/")).status == 503


async def test_status_page_html(client: Client, store: SqlStore) -> None:
    commit(store, open_incident(title="<script>alert('x')</script> DHL down"))
    response = await client.get("/")
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    html = await response.text()
    for text in ("Sendcloud status", "Sendcloud platform", "Carriers", "Integrations", "Shopify"):
        assert text in html
    assert "Major outage" in html and "Labels fail." in html
    assert "<script>" not in html
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; DHL down" in html


# ---------------------------------------------------------------------------- auth

WRITES = [
    ("POST", "/api/v1/deploys"),
    ("POST", "/api/v1/deploys/d-1/bad"),
    ("POST", "/api/v1/incidents/inc-1/updates"),
    ("POST", "/api/v1/maintenances"),
    ("DELETE", "/api/v1/maintenances/m-1"),
    ("POST", "/-/reload"),
]


@pytest.mark.parametrize(("method", "path"), WRITES)
@pytest.mark.parametrize(
    ("headers", "error"),
    [
        ({}, "authorization: bearer token required"),
        ({"Authorization": "Bearer wrong"}, "authorization: invalid token"),
        ({"Authorization": f"Basic {TOKEN}"}, "authorization: bearer token required"),
        ({"Authorization": "Bearer "}, "authorization: bearer token required"),
    ],
)
async def test_write_api_needs_the_token(
    client: Client, method: str, path: str, headers: dict[str, str], error: str
) -> None:
    response = await client.request(method, path, headers=headers, json={})
    assert response.status == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert await response.json() == {"error": error}


@pytest.mark.parametrize(("method", "path"), WRITES)
async def test_write_api_disabled_without_token(
    make_client: ClientFactory, method: str, path: str
) -> None:
    client = await make_client(token=None)
    response = await client.request(method, path, headers=AUTH, json={})
    assert response.status == 403
    assert await response.json() == {"error": "write API disabled: no API token configured"}


# ---------------------------------------------------------------------------- writes


async def test_deploy_and_flag_bad(client: Client, store: SqlStore) -> None:
    body = {"id": "d-17", "service": "label-api", "version": "2026.11.28-1",
            "components": ["carriers/dhl"], "at": "2026-11-28T09:58:00Z"}  # fmt: skip
    response = await client.post("/api/v1/deploys", headers=AUTH, json=body)
    assert response.status == 201
    assert await response.json() == {**body, "bad": False}
    [stored] = store.recent_deploys(NOW - 3600)
    assert (stored.id, stored.at, stored.components) == ("d-17", NOW - 120, ("carriers/dhl",))
    response = await client.post("/api/v1/deploys/d-17/bad", headers=AUTH)
    assert response.status == 200
    assert (await response.json())["bad"] is True
    assert store.recent_deploys(NOW - 3600)[0].bad is True


async def test_deploy_defaults(client: Client) -> None:
    body = {"service": "panel", "version": "1", "components": ["sendcloud/api"], "bad": True}
    response = await client.post("/api/v1/deploys", headers=AUTH, json=body)
    assert response.status == 201
    deploy = await response.json()
    assert deploy["id"].startswith("d-")
    assert deploy["at"] == "2026-11-28T10:00:00Z"
    assert deploy["bad"] is True


async def test_incident_update(client: Client, store: SqlStore) -> None:
    commit(store, open_incident())
    body = {"status": "identified", "body": "A certificate expired at the carrier."}
    response = await client.post("/api/v1/incidents/inc-1/updates", headers=AUTH, json=body)
    assert response.status == 201
    assert await response.json() == {
        "incident_id": "inc-1", "at": "2026-11-28T10:00:00Z", "status": "identified",
        "component_status": "major_outage", "body": "A certificate expired at the carrier.",
        "evidence": "", "public": True,
    }  # fmt: skip
    incident = store.get_incident("inc-1")
    assert incident.status is IncidentStatus.IDENTIFIED
    assert incident.updates[-1].body == "A certificate expired at the carrier."


async def test_update_of_resolved_incident_conflicts(client: Client, store: SqlStore) -> None:
    commit(store, open_incident())
    store.add_incident_update("inc-1", IncidentStatus.RESOLVED, "Done.", NOW - 60)
    body = {"status": "monitoring", "body": "again?"}
    response = await client.post("/api/v1/incidents/inc-1/updates", headers=AUTH, json=body)
    assert response.status == 409
    assert await response.json() == {"error": "incident 'inc-1': already resolved"}


async def test_maintenance_add_list_cancel(client: Client, store: SqlStore) -> None:
    body = {"start": "2026-11-28T12:00:00Z", "end": "2026-11-28T13:00:00+00:00",
            "components": ["carriers/dhl"], "title": "DHL planned maintenance"}  # fmt: skip
    response = await client.post("/api/v1/maintenances", headers=AUTH, json=body)
    assert response.status == 201
    created = await response.json()
    assert created["end"] == "2026-11-28T13:00:00Z"
    assert created["title"] == "DHL planned maintenance"
    listed = await (await client.get("/api/v2/scheduled-maintenances.json")).json()
    [window] = listed["scheduled_maintenances"]
    assert (window["id"], window["status"], window["scheduled_for"]) == (
        created["id"], "scheduled", "2026-11-28T12:00:00Z",
    )  # fmt: skip
    assert [c["id"] for c in window["components"]] == ["carriers.dhl"]
    response = await client.delete(f"/api/v1/maintenances/{created['id']}", headers=AUTH)
    assert response.status == 204
    assert store.list_maintenances(ending_after=NOW) == []


# ---------------------------------------------------------------------------- errors

DEPLOY = {"service": "label-api", "version": "1", "components": ["carriers/dhl"]}
WINDOW = {"start": "2026-11-28T12:00:00Z", "end": "2026-11-28T13:00:00Z",
          "components": ["carriers/dhl"], "title": "DHL work"}  # fmt: skip
UPDATE = {"status": "identified", "body": "Found it."}
DEPLOYS, MAINTENANCES = "/api/v1/deploys", "/api/v1/maintenances"
UPDATES = "/api/v1/incidents/inc-1/updates"


@pytest.mark.parametrize(
    ("path", "body", "error"),
    [
        (DEPLOYS, {**DEPLOY, "extra": 1}, "extra: unknown field"),
        (DEPLOYS, {"version": "1", "components": ["carriers/dhl"]}, "service: required"),
        (DEPLOYS, {**DEPLOY, "service": 7}, "service: expected a string"),
        (DEPLOYS, {**DEPLOY, "service": "  "}, "service: must not be empty"),
        (DEPLOYS, {**DEPLOY, "service": "x" * 101}, "service: longer than 100 characters"),
        (DEPLOYS, {**DEPLOY, "service": "a\nb"}, "service: invalid characters or format"),
        (DEPLOYS, {**DEPLOY, "version": None}, "version: expected a string"),
        (DEPLOYS, {**DEPLOY, "id": "has space"}, "id: invalid characters or format"),
        (DEPLOYS, {"service": "s", "version": "1"}, "components: required"),
        (DEPLOYS, {**DEPLOY, "components": "carriers/dhl"}, "components: expected a list"),
        (DEPLOYS, {**DEPLOY, "components": []}, "components: expected 1 to 100"),
        (DEPLOYS, {**DEPLOY, "components": ["DHL"]}, "components: 'DHL' is not a component"),
        (DEPLOYS, {**DEPLOY, "components": [1]}, "components: 1 is not a component"),
        (DEPLOYS, {**DEPLOY, "components": ["carriers/x"]}, "components: unknown component"),
        (DEPLOYS, {**DEPLOY, "bad": "yes"}, "bad: expected true or false"),
        (DEPLOYS, {**DEPLOY, "at": "yesterday"}, "at: bad time 'yesterday'"),
        (DEPLOYS, {**DEPLOY, "at": "2026-11-28T10:00:00"}, "at: bad time"),
        (DEPLOYS, {**DEPLOY, "at": "2026-11-28T11:00:00Z"}, "at: more than 5 minutes"),
        (UPDATES, {"body": "x"}, "status: required"),
        (UPDATES, {**UPDATE, "status": "investigating"}, "status: expected one of identified"),
        (UPDATES, {**UPDATE, "status": True}, "status: expected a string"),
        (UPDATES, {"status": "resolved"}, "body: required"),
        (UPDATES, {**UPDATE, "body": "x" * 10_001}, "body: longer than 10000 characters"),
        (UPDATES, {**UPDATE, "at": "2026-11-28T10:00:00Z"}, "at: unknown field"),
        (MAINTENANCES, {**WINDOW, "start": 5}, "start: expected a string"),
        (MAINTENANCES, {**WINDOW, "end": "soon"}, "end: bad time 'soon'"),
        (MAINTENANCES, {**WINDOW, "end": WINDOW["start"]}, "end: must be after start"),
        (MAINTENANCES, {**WINDOW, "start": "2026-11-28T08:00:00Z",
                        "end": "2026-11-28T09:00:00Z"}, "end: already in the past"),
        (MAINTENANCES, {k: v for k, v in WINDOW.items() if k != "title"}, "title: required"),
        (MAINTENANCES, {**WINDOW, "components": ["sendcloud/nope"]}, "components: unknown"),
        (MAINTENANCES, {**WINDOW, "id": "m-1"}, "id: unknown field"),
        (DEPLOYS + "/d-1/bad", {"why": "broken"}, "why: unknown field"),
    ],
)  # fmt: skip
async def test_validation_errors_name_the_field(
    client: Client, store: SqlStore, path: str, body: dict[str, Any], error: str
) -> None:
    commit(store, open_incident())
    response = await client.post(path, headers=AUTH, json=body)
    assert response.status == 400, await response.text()
    message = (await response.json())["error"]
    assert message.startswith(error), message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("raw", "error"),
    [(b"{not json", "body: not valid JSON"), (b"[1, 2]", "body: expected a JSON object"),
     (b"", "body: not valid JSON")],
)  # fmt: skip
async def test_malformed_bodies(client: Client, raw: bytes, error: str) -> None:
    headers = {**AUTH, "Content-Type": "application/json"}
    response = await client.post(DEPLOYS, headers=headers, data=raw)
    assert response.status == 400
    assert await response.json() == {"error": error}


async def test_non_json_content_type_is_415(client: Client) -> None:
    headers = {**AUTH, "Content-Type": "text/plain"}
    response = await client.post(DEPLOYS, headers=headers, data=b'{"service": "x"}')
    assert response.status == 415
    assert await response.json() == {"error": "content-type: expected application/json"}


async def test_body_over_the_limit_is_413(make_client: ClientFactory) -> None:
    client = await make_client(max_body_bytes=1024)
    big = {**DEPLOY, "service": "x" * 2000}
    response = await client.post(DEPLOYS, headers=AUTH, json=big)
    assert response.status == 413
    assert await response.json() == {"error": "body: larger than 1024 bytes"}

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: chunked encoding
        yield b'{"service": "'
        yield b"x" * 2000
        yield b'"}'

    headers = {**AUTH, "Content-Type": "application/json"}
    response = await client.post(DEPLOYS, headers=headers, data=chunks())
    assert response.status == 413
    assert await response.json() == {"error": "body: larger than 1024 bytes"}


@pytest.mark.parametrize(
    ("method", "path", "error"),
    [
        ("POST", "/api/v1/deploys/d-404/bad", "deploy 'd-404': not found"),
        ("POST", "/api/v1/incidents/inc-404/updates", "incident 'inc-404': not found"),
        ("DELETE", "/api/v1/maintenances/m-404", "maintenance 'm-404': not found"),
        ("GET", "/api/v2/nothing.json", "/api/v2/nothing.json: not found"),
    ],
)
async def test_unknown_ids_are_404(client: Client, method: str, path: str, error: str) -> None:
    body = UPDATE if "updates" in path else None
    response = await client.request(method, path, headers=AUTH, json=body)
    assert response.status == 404
    assert await response.json() == {"error": error}


async def test_wrong_method_is_405(client: Client) -> None:
    response = await client.get(DEPLOYS)
    assert response.status == 405
    assert "POST" in response.headers["Allow"]
    assert await response.json() == {"error": "/api/v1/deploys: method not allowed"}
    response = await client.post("/api/v2/summary.json")
    assert response.status == 405
    assert response.headers["Access-Control-Allow-Origin"] == "*"
