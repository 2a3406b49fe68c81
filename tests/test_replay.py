"""`detector replay` end to end: the JSON contract of DESIGN.md "Replay", `--until`, the
table for people, and the DESIGN.md example (10:41 open, 11:08 resolve)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from enginekit import MIN, T0

from detector.cli import main
from detector.engine.rulefile import load_rules
from detector.events import read_events, write_events
from detector.model import Maintenance, ProbeResult
from detector.replay import replay
from detector.ruletest import series_events

ROOT = Path(__file__).parent.parent
DATA = Path(__file__).parent / "data" / "events"
RULES = str(DATA / "labels.yaml")
EVENTS = str(DATA / "outage.jsonl")


def episode(component: str, started: str, ended: str | None, outcome: str) -> dict[str, Any]:
    return {
        "rule": "carrier-labels",
        "component": component,
        "started_at": f"2026-11-28T{started}:00Z",
        "ended_at": f"2026-11-28T{ended}:00Z" if ended else None,
        "outcome": outcome,
    }


# outage.jsonl, one result a minute from 10:00 to 10:39 per carrier, judged by labels.yaml
# (window 5m, open_after 10m, resolve_after 5m, deploy_window 15m):
# - dhl fails 10:05-10:19: 2 of 5 at 10:06 starts the episode, open at 10:16 (all failing:
#   major), 4 of 5 at 10:20 is partial, 1 of 5 at 10:23 starts monitoring, resolved 10:28.
# - ups fails 10:05-10:06 (too short, 10:06-10:10) and 10:30-10:34, 6 minutes after deploy
#   d-1 at 10:25: opens at once at 10:31, monitoring from 10:38, resolve due 10:43 — after
#   the last event, so still open at the end of the file.
# - dpd fails 10:15-10:24; its episode (from 10:16) ends in maintenance at 10:20-10:30.
EXPECTED: dict[str, Any] = {
    "incidents": [
        {
            "rule": "carrier-labels",
            "component": "carriers/dhl",
            "title": "dhl: label creation failing (DE)",
            "cause": "sustained",
            "deploy": None,
            "impact": "major_outage",
            "opened_at": "2026-11-28T10:16:00Z",
            "resolved_at": "2026-11-28T10:28:00Z",
            "markets": ["DE"],
            "updates": [
                {"at": "2026-11-28T10:16:00Z", "status": "investigating",
                 "component_status": "major_outage"},
                {"at": "2026-11-28T10:20:00Z", "status": "investigating",
                 "component_status": "partial_outage"},
                {"at": "2026-11-28T10:23:00Z", "status": "monitoring",
                 "component_status": "partial_outage"},
                {"at": "2026-11-28T10:28:00Z", "status": "resolved",
                 "component_status": "operational"},
            ],
        },
        {
            "rule": "carrier-labels",
            "component": "carriers/ups",
            "title": "ups: label creation failing (US)",
            "cause": "deploy",
            "deploy": "d-1",
            "impact": "major_outage",
            "opened_at": "2026-11-28T10:31:00Z",
            "resolved_at": None,
            "markets": ["US"],
            "updates": [
                {"at": "2026-11-28T10:31:00Z", "status": "identified",
                 "component_status": "partial_outage"},
                {"at": "2026-11-28T10:34:00Z", "status": "identified",
                 "component_status": "major_outage"},
                {"at": "2026-11-28T10:35:00Z", "status": "identified",
                 "component_status": "partial_outage"},
                {"at": "2026-11-28T10:38:00Z", "status": "monitoring",
                 "component_status": "partial_outage"},
            ],
        },
    ],
    "episodes": [
        episode("carriers/dhl", "10:06", "10:23", "incident"),
        episode("carriers/ups", "10:06", "10:10", "too_short"),
        episode("carriers/dpd", "10:16", "10:20", "maintenance"),
        episode("carriers/ups", "10:31", "10:38", "incident"),
    ],
}  # fmt: skip

INCIDENT_KEYS = [
    "id", "rule", "component", "title", "cause", "deploy", "impact", "opened_at", "resolved_at",
    "markets", "updates",
]  # fmt: skip
UPDATE_KEYS = ["at", "status", "component_status", "body", "evidence"]
EPISODE_KEYS = ["rule", "component", "started_at", "ended_at", "outcome"]


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    code = main(["replay", "--rules", RULES, "--events", EVENTS, "--format", "json", *args])
    captured = capsys.readouterr()
    assert (code, captured.err) == (0, "")
    document: dict[str, Any] = json.loads(captured.out)
    return document


def without_ids_and_bodies(document: dict[str, Any]) -> dict[str, Any]:
    incidents = [
        {k: v for k, v in incident.items() if k != "id"}
        | {
            "updates": [
                {k: v for k, v in u.items() if k not in ("body", "evidence")}
                for u in incident["updates"]
            ]
        }
        for incident in document["incidents"]
    ]
    return {"incidents": incidents, "episodes": document["episodes"]}


def test_json_has_exactly_the_contract_keys(capsys: pytest.CaptureFixture[str]) -> None:
    document = run_json(capsys)
    assert list(document) == ["incidents", "episodes"]
    for incident in document["incidents"]:
        assert list(incident) == INCIDENT_KEYS
        for update in incident["updates"]:
            assert list(update) == UPDATE_KEYS
    for episode in document["episodes"]:
        assert list(episode) == EPISODE_KEYS


def test_json_matches_the_expected_timeline(capsys: pytest.CaptureFixture[str]) -> None:
    document = run_json(capsys)
    assert without_ids_and_bodies(document) == EXPECTED


def test_ids_are_distinct_and_stable_across_runs(capsys: pytest.CaptureFixture[str]) -> None:
    first = [i["id"] for i in run_json(capsys)["incidents"]]
    second = [i["id"] for i in run_json(capsys)["incidents"]]
    assert first == second
    assert len(set(first)) == 2 and all(isinstance(i, str) and i for i in first)


def test_bodies_are_public_and_evidence_says_why(capsys: pytest.CaptureFixture[str]) -> None:
    dhl, ups = run_json(capsys)["incidents"]
    evidence = [u["evidence"] for u in dhl["updates"]]
    assert evidence[0] == "error_ratio (1) >= 0.9; seen from 1 of 1 instances"
    assert evidence[1].startswith("error_ratio (0.8) >= 0.3")
    assert "error_ratio (0.2)" in evidence[2] and "resolves after 5m" in evidence[2]
    assert evidence[3] == "checks have passed for 5m"
    bodies = [u["body"] for u in dhl["updates"]]
    assert bodies[0] == "Creating labels with dhl fails."  # the rule's message
    assert bodies[3].startswith("This incident has been resolved")
    for body in bodies + [u["body"] for u in ups["updates"]]:
        assert "error_ratio" not in body and "d-1" not in body and "carrier-labels" not in body
    opening = ups["updates"][0]
    assert "error_ratio (0.4) >= 0.3" in opening["evidence"]
    assert "deploy d-1 (label-api 2026.11.28-3, 2026-11-28T10:25:00Z)" in opening["evidence"]
    assert "6m after it" in opening["evidence"]


def test_until_evaluates_deadlines_after_the_last_event(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The ups resolve is due at 10:43, four minutes after the last result."""
    ups = run_json(capsys, "--until", "2026-11-28T10:45:00Z")["incidents"][1]
    assert ups["resolved_at"] == "2026-11-28T10:43:00Z"
    assert [u["status"] for u in ups["updates"]][-2:] == ["monitoring", "resolved"]
    before = run_json(capsys, "--until", "2026-11-28T10:42:59Z")["incidents"][1]
    assert before["resolved_at"] is None


def test_until_accepts_an_offset(capsys: pytest.CaptureFixture[str]) -> None:
    ups = run_json(capsys, "--until", "2026-11-28T12:43:00+02:00")["incidents"][1]
    assert ups["resolved_at"] == "2026-11-28T10:43:00Z"


def test_until_before_the_end_stops_there(capsys: pytest.CaptureFixture[str]) -> None:
    """At 10:33 ups is open and failing: its episode is still running (ended_at null)."""
    document = run_json(capsys, "--until", "2026-11-28T10:33:00Z")
    dhl, ups = document["incidents"]
    assert dhl["resolved_at"] == "2026-11-28T10:28:00Z"
    assert (ups["resolved_at"], ups["updates"][-1]["status"]) == (None, "identified")
    assert document["episodes"][-1] == episode("carriers/ups", "10:31", None, "incident")


def test_table_is_a_readable_timeline(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", "--rules", RULES, "--events", EVENTS, "--format", "table"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == "120 results, 2 incidents"
    assert "dhl: label creation failing (DE)  [carrier-labels on carriers/dhl]" in lines
    assert "ups: label creation failing (US)  [carrier-labels on carriers/ups]" in lines
    assert any("cause deploy (d-1)" in line and "still open" in line for line in lines)
    index = next(i for i, line in enumerate(lines) if line.strip().startswith("2026-11-28T10:20"))
    update, why = lines[index], lines[index + 1]
    assert "investigating" in update and "partial_outage" in update
    assert "(on-call only)" in update  # less impact while it settles: not a public update
    assert why.strip().startswith("why: error_ratio (0.8) >= 0.3")
    assert any(line.strip().startswith("2026-11-28T10:28:00Z  resolved") for line in lines)
    assert "episodes:" in lines
    assert any("maintenance" in line and "carriers/dpd" in line for line in lines)
    assert "{" not in out  # not JSON


def test_design_example_opens_at_10_41_and_resolves_at_11_08(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """DESIGN.md "Rule unit tests": ok x10, fail x45, ok x30 through rules/carriers.yaml."""
    results = series_events(
        {
            "probe": "dhl-label-de",
            "kind": "label_creation",
            "component": "carriers/dhl",
            "labels": {"market": "DE"},
            "interval": "1m",
            "start": "2026-11-28T10:00:00Z",
            "values": "ok x10, fail x45, ok x30",
        }
    )
    events = tmp_path / "dhl-45m.jsonl"
    with open(events, "wb") as handle:
        write_events(results, handle)
    rules = [str(ROOT / "rules" / "carriers.yaml"), str(ROOT / "rules" / "platform.yaml")]
    code = main(["replay", "--rules", *rules, "--events", str(events), "--format", "json"])
    assert code == 0
    (incident,) = json.loads(capsys.readouterr().out)["incidents"]
    assert (incident["rule"], incident["component"]) == ("carrier-label-creation", "carriers/dhl")
    assert (incident["opened_at"], incident["resolved_at"]) == (
        "2026-11-28T10:41:00Z",
        "2026-11-28T11:08:00Z",
    )
    assert incident["title"] == "dhl: label creation failing (DE)"
    assert [u["status"] for u in incident["updates"]][-2:] == ["monitoring", "resolved"]
    monitoring = next(u for u in incident["updates"] if u["status"] == "monitoring")
    assert monitoring["at"] == "2026-11-28T10:58:00Z"  # the last matching window ends at 57m


def test_replay_library_counts_what_it_read() -> None:
    report = replay(load_rules([RULES]).rules, read_events(EVENTS))
    assert (report.results, report.events, len(report.incidents)) == (120, 122, 2)


def test_two_maintenances_starting_together_both_hold(tmp_path: Path) -> None:
    """Regression: lines without an 'id' once got m-<start>, so the second window replaced
    the first in the engine's calendar."""
    path = tmp_path / "maintenance.jsonl"
    with open(path, "wb") as handle:  # written without ids, as an operator would write them
        handle.write(
            b'{"type": "maintenance", "start": "2026-11-28T10:00:00Z",'
            b' "end": "2026-11-28T11:00:00Z", "components": ["carriers/dhl"]}\n'
            b'{"type": "maintenance", "start": "2026-11-28T10:00:00Z",'
            b' "end": "2026-11-28T10:30:00Z", "components": ["carriers/ups"]}\n'
        )
        write_events(
            [
                ProbeResult(T0 + m * MIN, "dhl", "label_creation", "carriers/dhl", False)
                for m in range(60)
            ],
            handle,
        )
    maintenances = [e for e in read_events(path) if isinstance(e, Maintenance)]
    assert [m.components for m in maintenances] == [("carriers/dhl",), ("carriers/ups",)]
    report = replay(load_rules([RULES]).rules, read_events(path))
    assert report.incidents == []  # dhl is under maintenance for the whole hour
