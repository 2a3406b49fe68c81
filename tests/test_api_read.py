"""The read side of the HTTP API on loopback: health, metrics, reload, the Statuspage v2
JSON and the status page, over a real SQLite store."""

from __future__ import annotations

import pytest
from apikit import AUTH, NOW, V2_PATHS, Client, StoreControl, commit, open_incident
from prometheus_client.parser import text_string_to_metric_families

from detector.metrics import Metrics
from detector.model import IncidentStatus, Maintenance
from detector.store.sql import SqlStore
from detector.timeutil import format_time

# the shared fixtures, bound here so pytest finds them


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

V2_KEYS = [
    {"page", "components", "incidents", "scheduled_maintenances", "status"},
    {"page", "status"},
    {"page", "components"},
    {"page", "incidents"},
    {"page", "incidents"},
    {"page", "scheduled_maintenances"},
    {"page", "scheduled_maintenances"},
    {"page", "scheduled_maintenances"},
]


@pytest.mark.parametrize(("path", "keys"), list(zip(V2_PATHS, V2_KEYS, strict=True)))
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


async def test_upcoming_and_active_maintenances(client: Client, store: SqlStore) -> None:
    store.add_maintenance(Maintenance(NOW - 600, NOW + 600, ("carriers/dhl",), "Now", "m-now"))
    store.add_maintenance(Maintenance(NOW + 3600, NOW + 7200, ("carriers/ups",), "Later", "m-2"))
    store.add_maintenance(Maintenance(NOW - 7200, NOW - 3600, ("carriers/ups",), "Done", "m-0"))

    async def ids(path: str) -> list[str]:
        payload = await (await client.get(f"/api/v2/scheduled-maintenances{path}")).json()
        return [m["id"] for m in payload["scheduled_maintenances"]]

    assert await ids("/upcoming.json") == ["m-2"]
    assert await ids("/active.json") == ["m-now"]
    assert sorted(await ids(".json")) == ["m-0", "m-2", "m-now"]
