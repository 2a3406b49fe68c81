"""Public text vs evidence: the status page and every v2 endpoint show the public body of
public updates only. Rule names, expressions, metric values, deploy ids, versions and
instance names stay with on-call (write API responses, `detector incidents show`)."""

from __future__ import annotations

import functools
from dataclasses import replace
from pathlib import Path

import pytest
from apikit import AUTH, COMPONENTS, NOW, PUBLIC_PATHS, Client, ClientFactory, commit

from detector.cli import main
from detector.model import ComponentStatus, Incident, IncidentStatus, IncidentUpdate, Maintenance
from detector.store.base import ComponentRecord
from detector.store.sql import SqlStore

MAJOR, PARTIAL = ComponentStatus.MAJOR_OUTAGE, ComponentStatus.PARTIAL_OUTAGE
RULE, DEPLOY_ID, VERSION, SERVICE = "carrier-label-creation", "d-17", "2026.11.28-1", "label-api"
OPENED = "We are investigating problems creating labels with DHL in Germany."
IDENTIFIED = "A recent change on our side caused problems creating labels with DHL."
# Nothing of these may reach a public reader, in any spelling the page or JSON would use.
FORBIDDEN = [
    RULE, DEPLOY_ID, VERSION, SERVICE, "error_ratio", "latency_p95", ">=", "&gt;=", "0.42",
    "seen from", "ams-1", "flagged bad", "hidden on-call note",
]  # fmt: skip


def live_incident() -> Incident:
    updates = [
        IncidentUpdate(NOW - 1800, IncidentStatus.INVESTIGATING, MAJOR, OPENED,
                       "error_ratio (1) >= 0.9; seen from 2 of 3 instances (ams-1, fra-1)"),
        IncidentUpdate(NOW - 1200, IncidentStatus.IDENTIFIED, MAJOR, IDENTIFIED,
                       f"deploy {DEPLOY_ID} ({SERVICE} {VERSION}) flagged bad; rule {RULE}"),
        IncidentUpdate(NOW - 600, IncidentStatus.IDENTIFIED, PARTIAL, "hidden on-call note",
                       "error_ratio (0.42) >= 0.3; latency_p95 (7.1) > 5", public=False),
    ]  # fmt: skip
    return Incident(
        id="3f2a9c1d7e42", rule=RULE, component="carriers/dhl",
        title="DHL: label creation failing (DE)", cause="deploy", deploy=DEPLOY_ID,
        impact=MAJOR, status=IncidentStatus.IDENTIFIED, component_status=PARTIAL,
        opened_at=NOW - 1800, updates=updates, markets=("DE",), started_at=NOW - 2400,
    )  # fmt: skip


class MemoryStore:
    """The three reads the public endpoints make, over model objects held in memory: the web
    layer's half of the contract, whatever the store persists."""

    def __init__(self, components: list[ComponentRecord], incidents: list[Incident]) -> None:
        self.components, self.incidents = components, incidents

    def list_components(self) -> list[ComponentRecord]:
        return list(self.components)

    def list_incidents(self, *, unresolved_only: bool = False, limit: int = 50) -> list[Incident]:
        chosen = [i for i in self.incidents if not unresolved_only or i.resolved_at is None]
        return chosen[:limit]

    def list_maintenances(self, *, ending_after: float) -> list[Maintenance]:
        return []


@pytest.fixture(params=["memory", "sqlite"])
def public_client(
    request: pytest.FixtureRequest, make_client: ClientFactory, store: SqlStore
) -> ClientFactory:
    """The API over the real store (`sqlite`) or over model objects in memory (`memory`)."""
    incident = live_incident()
    if request.param == "sqlite":
        commit(store, incident)
        assert [u.public for u in store.get_incident(incident.id).updates] == [True, True, False]
        reads: object = store
    else:
        dhl = [replace(c, status=PARTIAL) if c.id == "carriers/dhl" else c for c in COMPONENTS]
        reads = MemoryStore(dhl, [incident])
    return functools.partial(make_client, store=reads)


@pytest.mark.parametrize("path", PUBLIC_PATHS)
async def test_nothing_internal_reaches_a_public_reader(
    public_client: ClientFactory, path: str
) -> None:
    client = await public_client()
    response = await client.get(path)
    assert response.status == 200
    text = await response.text()
    leaked = [word for word in FORBIDDEN if word in text]
    assert leaked == [], f"{path} shows {leaked}"
    if path in ("/", "/api/v2/summary.json", "/api/v2/incidents.json"):
        assert IDENTIFIED in text and (OPENED in text or "investigating problems" in text)
    assert '"evidence"' not in text


async def test_the_write_api_answer_carries_body_and_evidence(
    client: Client, store: SqlStore
) -> None:
    commit(store, live_incident())
    body = {"status": "monitoring", "body": "A fix has been deployed."}
    response = await client.post("/api/v1/incidents/3f2a9c1d7e42/updates", headers=AUTH, json=body)
    assert response.status == 201
    answer = await response.json()
    assert answer["body"] == "A fix has been deployed."
    assert {"evidence", "public"} <= set(answer)


def test_incidents_show_prints_body_and_evidence(
    store: SqlStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    commit(store, live_incident())
    url = str(store.engine.url)
    assert main(["incidents", "show", "--store", url, "3f2a9c1d7e42"]) == 0
    out = capsys.readouterr().out
    assert OPENED in out and "evidence: error_ratio (1) >= 0.9" in out
    assert "hidden on-call note" in out and "(on-call only)" in out


def test_an_on_call_update_prints_with_its_evidence(capsys: pytest.CaptureFixture[str]) -> None:
    from detector.commands import _print_update

    for update in live_incident().updates:
        _print_update(update)
    out = capsys.readouterr().out
    assert OPENED in out and "      evidence: error_ratio (1) >= 0.9; seen from 2" in out
    assert "hidden on-call note  (on-call only)" in out
    assert f"evidence: deploy {DEPLOY_ID} ({SERVICE} {VERSION}) flagged bad" in out
