"""The write API on loopback: bearer auth, deploys, incident updates, maintenances, and
the 4xx answers to bad requests, over a real SQLite store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from apikit import AUTH, NOW, TOKEN, Client, ClientFactory, commit, open_incident

from detector.model import IncidentStatus
from detector.store.sql import SqlStore

# the shared fixtures, bound here so pytest finds them


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
    assert created["created_at"] == "2026-11-28T10:00:00Z"  # when it was recorded
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
        (DEPLOYS, {**DEPLOY, "service": "a\nb"}, "service: control or bidirectional formatting "
                                                   "character U+000A at position 1"),
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
        (UPDATES, {**UPDATE, "body": "x" * 5_001}, "body: longer than 5000 characters"),
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
