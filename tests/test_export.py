"""`detector export` writes recorded history that `detector replay` reads back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from factories import T0, make_result

from detector.cli import main
from detector.model import Deploy, Maintenance
from detector.store import open_store


def test_export_then_replay_finds_the_outage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'history.db'}"
    store = open_store(url)
    outage = range(10, 55)  # minutes
    store.add_results(
        [
            make_result(T0 + minute * 60, ok=minute not in outage, latency_s=0.3, phases={})
            for minute in range(85)
        ]
    )
    store.add_deploy(Deploy(T0 - 3600, "d-1", "label-api", "v1", ("carriers/dhl",)))
    store.add_maintenance(Maintenance(T0 + 7200, T0 + 9000, ("carriers/ups",), "UPS", "m-1"))
    store.close()

    events = tmp_path / "history.jsonl"
    since, until = "2026-11-28T10:00:00Z", "2026-11-28T12:00:00Z"
    args = ["export", "--store", url, "--since", since, "--until", until, "--out", str(events)]
    assert main(args) == 0
    assert "exported 85 events" in capsys.readouterr().err
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    assert {line["type"] for line in lines} == {"result"}  # the deploy and maintenance are outside
    assert lines[0]["at"] == since

    assert main(["replay", "--rules", "rules/", "--events", str(events), "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    [incident] = report["incidents"]
    assert incident["title"] == "dhl: label creation failing (DE)"
    assert (incident["opened_at"], incident["resolved_at"]) == (
        "2026-11-28T10:41:00Z",
        "2026-11-28T11:08:00Z",
    )


def test_export_rejects_a_backwards_window(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'history.db'}"
    args = [
        "export",
        "--store",
        url,
        "--since",
        "2026-11-29T00:00:00Z",
        "--until",
        "2026-11-28T00:00:00Z",
    ]
    assert main(args) == 1
    assert capsys.readouterr().err == "detector: error: --until must be after --since\n"
