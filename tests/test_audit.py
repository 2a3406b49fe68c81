"""Named write-API tokens and the audit trail: every accepted write leaves one record naming
the token's name as actor, in the same transaction as the change where it is a store write;
rejected writes (4xx) are logged, not stored; `detector audit` reads the trail."""

from __future__ import annotations

from pathlib import Path

import pytest
from apikit import AUTH, NOW, ClientFactory, commit, open_incident
from daemonkit import sqlite_url

from detector.cli import main
from detector.clock import ManualClock
from detector.model import Deploy
from detector.settings import ConfigError, load_settings
from detector.store.audit import AuditEntry, auditing
from detector.store.base import NotFound
from detector.store.sql import SqlStore

TOKENS = {"ci": "tok-ci-0123456789", "alice": "tok-alice-0123456789"}
DEPLOY = {"id": "d-1", "service": "api", "version": "1.2", "components": ["carriers/dhl"]}
WINDOW = {
    "start": "2026-11-28T11:00:00Z",
    "end": "2026-11-28T12:00:00Z",
    "components": ["carriers/dhl"],
    "title": "DHL upgrade",
}


def bearer(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[name]}"}


async def test_every_accepted_write_is_audited_with_its_tokens_name(
    make_client: ClientFactory, store: SqlStore
) -> None:
    client = await make_client(token=None, tokens=TOKENS)
    commit(store, open_incident())
    writes = [
        ("ci", "post", "/api/v1/deploys", DEPLOY, 201),
        ("alice", "post", "/api/v1/deploys/d-1/bad", None, 200),
        ("alice", "post", "/api/v1/incidents/inc-1/updates",
         {"status": "identified", "body": "DHL is looking into it."}, 201),
        ("alice", "post", "/api/v1/maintenances", WINDOW, 201),
        ("ci", "post", "/-/reload", None, 200),
    ]  # fmt: skip
    for actor, method, path, body, status in writes:
        response = await client.request(method, path, json=body, headers=bearer(actor))
        assert response.status == status, await response.text()
    maintenance_id = store.list_maintenances(ending_after=NOW)[0].id
    gone = await client.delete(f"/api/v1/maintenances/{maintenance_id}", headers=bearer("ci"))
    assert gone.status == 204
    trail = list(reversed(store.list_audit()))
    assert [(e.actor, e.action, e.target) for e in trail] == [
        ("ci", "deploy.record", "d-1"),
        ("alice", "deploy.flag_bad", "d-1"),
        ("alice", "incident.update", "inc-1"),
        ("alice", "maintenance.add", maintenance_id),
        ("ci", "reload", ""),
        ("ci", "maintenance.cancel", maintenance_id),
    ]
    assert {e.outcome for e in trail} == {"accepted"}
    assert trail[0].details["version"] == "1.2"
    assert trail[2].details == {"status": "identified", "body": "DHL is looking into it."}


async def test_rejected_writes_are_not_stored(
    make_client: ClientFactory, store: SqlStore, capsys: pytest.CaptureFixture[str]
) -> None:
    client = await make_client(token=None, tokens=TOKENS)
    refused = [
        ({"Authorization": "Bearer nope"}, "/api/v1/deploys", DEPLOY, 401),
        ({}, "/api/v1/deploys", DEPLOY, 401),
        (bearer("ci"), "/api/v1/deploys", {**DEPLOY, "components": ["nope/x"]}, 400),
        (bearer("ci"), "/api/v1/deploys/unknown/bad", None, 404),
        (bearer("ci"), "/api/v1/incidents/unknown/updates",
         {"status": "resolved", "body": "x"}, 404),
    ]  # fmt: skip
    for headers, path, body, status in refused:
        assert (await client.post(path, json=body, headers=headers)).status == status
    assert store.list_audit() == []
    assert "tok-ci" not in capsys.readouterr().out


async def test_the_single_token_form_is_named_default(
    make_client: ClientFactory, store: SqlStore
) -> None:
    client = await make_client()
    assert (await client.post("/api/v1/deploys", json=DEPLOY, headers=AUTH)).status == 201
    assert [e.actor for e in store.list_audit()] == ["default"]


def test_the_record_commits_and_rolls_back_with_the_change(store: SqlStore) -> None:
    entry = AuditEntry(NOW, "alice", "maintenance.cancel", "nope")
    with auditing(entry) as announced, pytest.raises(NotFound):
        store.cancel_maintenance("nope", NOW)
    assert not announced.written and store.list_audit() == []
    deploy = Deploy(NOW, "d-2", "api", "1.3", ("carriers/dhl",))
    with auditing(AuditEntry(NOW, "ci", "deploy.record", "d-2")) as announced:
        store.add_deploy(deploy)
        store.add_deploy(deploy)  # a second write in the same request: one record
    assert announced.written
    assert [(e.actor, e.target) for e in store.list_audit()] == [("ci", "d-2")]


def test_detector_audit_filters_by_time_actor_and_limit(
    tmp_path: Path, store: SqlStore, capsys: pytest.CaptureFixture[str], clock: ManualClock
) -> None:
    for offset, actor in enumerate(["ci", "alice", "ci", "alice"]):
        store.add_audit(AuditEntry(NOW + offset * 60, actor, "deploy.record", f"d-{offset}"))
    url = sqlite_url(tmp_path)
    assert main(["audit", "--store", url, "--actor", "alice"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[3] for line in lines] == ["d-3", "d-1"]
    assert lines[0].startswith("2026-11-28T10:03:00Z  alice")
    assert main(["audit", "--store", url, "--since", "2026-11-28T10:02:00Z", "--limit", "1"]) == 0
    assert [line.split()[3] for line in capsys.readouterr().out.splitlines()] == ["d-3"]
    assert main(["audit", "--store", url, "--since", "yesterday-ish"]) != 0
    assert "Traceback" not in capsys.readouterr().err


CONFIG = """\
rules: [rules/]
api_token_env: null
api_tokens:
{tokens}
components:
  - {{id: carriers/dhl, name: DHL}}
"""


@pytest.mark.parametrize(
    ("tokens", "error"),
    [
        ("  - {name: ci, token_env: TEST_TOKEN_CI, token_file: x}", "exactly one of"),
        ("  - {name: ci}", "exactly one of"),
        ("  - {name: 'a b', token_env: TEST_TOKEN_CI}", "api_tokens[0].name"),
        ("  - {name: ci, token_env: TEST_TOKEN_UNSET}", "TEST_TOKEN_UNSET is not set"),
        ("  - {name: ci, token_env: TEST_TOKEN_CI}\n  - {name: ci, token_file: t}", "twice"),
        ("  - {name: ci, token_env: TEST_TOKEN_CI}\n  - {name: b, token_file: t}", "same token"),
    ],
)
def test_bad_token_config_is_one_line_naming_api_tokens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tokens: str, error: str
) -> None:
    monkeypatch.setenv("TEST_TOKEN_CI", "same-secret-value")
    (tmp_path / "t").write_text("same-secret-value\n")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cfg.yaml").write_text(CONFIG.format(tokens=tokens))
    with pytest.raises(ConfigError, match="api_tokens") as raised:
        load_settings("cfg.yaml")
    assert error in str(raised.value) and "same-secret-value" not in str(raised.value)
    assert "\n" not in str(raised.value)


def test_named_tokens_from_env_and_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_TOKEN_CI", "ci-secret")
    monkeypatch.setenv("TEST_TOKEN_DEFAULT", "default-secret")
    (tmp_path / "alice.token").write_text("alice-secret\n")
    monkeypatch.chdir(tmp_path)
    tokens = "  - {name: ci, token_env: TEST_TOKEN_CI}\n  - {name: alice, token_file: alice.token}"
    text = CONFIG.format(tokens=tokens).replace(
        "api_token_env: null", "api_token_env: TEST_TOKEN_DEFAULT"
    )
    (tmp_path / "cfg.yaml").write_text(text)
    assert load_settings("cfg.yaml").named_api_tokens() == {
        "default": "default-secret",
        "ci": "ci-secret",
        "alice": "alice-secret",
    }
