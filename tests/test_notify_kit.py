"""The SRE kit: the Prometheus alert rules pass `promtool test rules`, and the Grafana
dashboard is valid dashboard JSON whose every query names a metric detector exports."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from debian import require_binary

from detector.metrics import Metrics

ROOT = Path(__file__).resolve().parent.parent
ALERTS = ROOT / "config" / "prometheus" / "detector-alerts.yaml"
ALERT_TESTS = ROOT / "config" / "prometheus" / "detector-alerts.test.yaml"
DASHBOARD = ROOT / "config" / "grafana" / "detector.json"
_NAME = re.compile(r"\b(detector_[a-z0-9_]+)")
_SUFFIXES = ("", "_total", "_bucket", "_count", "_sum", "_created")


def exported() -> set[str]:
    """Every series name the daemon's registry can expose."""
    families = {family.name for family in Metrics("test").registry.collect()}
    return {name + suffix for name in families for suffix in _SUFFIXES}


@pytest.fixture(scope="module")
def promtool() -> str:
    return require_binary("promtool", "prometheus")


def test_the_alert_rules_pass_their_promtool_tests(promtool: str) -> None:
    for command in (["check", "rules", str(ALERTS)], ["test", "rules", str(ALERT_TESTS)]):
        done = subprocess.run([promtool, *command], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_is_tested_and_names_only_real_metrics() -> None:
    rules = yaml.safe_load(ALERTS.read_text())["groups"][0]["rules"]
    tests = yaml.safe_load(ALERT_TESTS.read_text())["tests"]
    firing = {
        case["alertname"]
        for test in tests
        for case in test["alert_rule_test"]
        if case.get("exp_alerts")
    }
    assert {rule["alert"] for rule in rules} == firing
    names = {name for rule in rules for name in _NAME.findall(rule["expr"])}
    assert names and names <= exported(), names - exported()


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    panels: list[dict[str, Any]] = []
    for panel in dashboard["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))
    return panels


def test_the_dashboard_is_valid_and_every_query_names_a_real_metric() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"] and isinstance(dashboard["schemaVersion"], int)
    assert dashboard["templating"]["list"][0]["type"] == "datasource"
    panels = _panels(dashboard)
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids))
    used: set[str] = set()
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24 and grid["h"] > 0, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["targets"], panel["title"]
        refs = [target["refId"] for target in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            names = _NAME.findall(target["expr"])
            assert names, f"{panel['title']}: a query that names no detector metric"
            assert set(names) <= exported(), f"{panel['title']}: {set(names) - exported()}"
            used.update(names)
    # The dashboard covers the notification metrics this kit alerts on.
    assert {"detector_notifications_total", "detector_notification_queue_depth"} <= used
