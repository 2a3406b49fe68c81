"""Metrics: contract names, every update method, and a clean exposition (`promtool`)."""

from __future__ import annotations

import subprocess

import pytest
from debian import require_binary
from factories import T0, make_result
from prometheus_client.parser import text_string_to_metric_families

from detector.metrics import Metrics
from detector.model import ComponentStatus

CONTRACT_SAMPLES = {
    "detector_probe_runs_total",
    "detector_probe_duration_seconds_bucket",
    "detector_probe_success",
    "detector_component_status",
    "detector_failure_duration_seconds",
    "detector_incidents_open",
    "detector_incidents_opened_total",
    "detector_incidents_resolved_total",
    "detector_rule_evaluation_duration_seconds_bucket",
    "detector_rule_evaluation_failures_total",
    "detector_config_last_reload_successful",
    "detector_config_last_reload_success_timestamp_seconds",
    "detector_store_errors_total",
    "detector_is_leader",
    "detector_build_info",
    "detector_self_check_ok",
}


def busy_metrics() -> Metrics:
    """Every metric with at least one sample."""
    metrics = Metrics(version="1.2.3")
    metrics.observe_probe(make_result())
    metrics.observe_probe(make_result(ok=False, error="HTTP 503"))
    metrics.observe_probe(
        make_result(ok=False, latency_s=None, error="timeout", failure_kind="error")
    )
    metrics.set_component_statuses({"carriers/dhl": ComponentStatus.MAJOR_OUTAGE})
    metrics.set_failure_durations({("carrier-label-creation", "carriers/dhl"): 95.0})
    metrics.set_open_incidents({"carrier-label-creation": 1, "platform-api": 0})
    metrics.incident_opened("carrier-label-creation", "deploy")
    metrics.incident_resolved("carrier-label-creation")
    metrics.observe_evaluation(0.012)
    metrics.evaluation_failed()
    metrics.config_reloaded(True, T0)
    metrics.store_error()
    metrics.set_leader(True)
    return metrics


# ---------------------------------------------------------------------------- probes


def test_observe_probe_counts_by_outcome() -> None:
    metrics = Metrics()
    get = metrics.registry.get_sample_value
    labels = {"probe": "dhl-label-de", "kind": "label_creation", "component": "carriers/dhl"}
    metrics.observe_probe(make_result())
    metrics.observe_probe(make_result())
    assert get("detector_probe_runs_total", {**labels, "result": "ok"}) == 2
    assert get("detector_probe_success", {"probe": "dhl-label-de"}) == 1
    metrics.observe_probe(make_result(ok=False, error="HTTP 503"))
    assert get("detector_probe_runs_total", {**labels, "result": "fail"}) == 1
    assert get("detector_probe_success", {"probe": "dhl-label-de"}) == 0
    metrics.observe_probe(
        make_result(ok=False, latency_s=None, error="timeout after 10s", failure_kind="error")
    )
    assert get("detector_probe_runs_total", {**labels, "result": "error"}) == 1
    assert get("detector_probe_duration_seconds_count", {"kind": "label_creation"}) == 3
    assert get("detector_probe_duration_seconds_sum", {"kind": "label_creation"}) == (
        pytest.approx(3 * 0.41)  # three timed runs of make_result()
    )
    bucket = {"kind": "label_creation", "le": "0.5"}
    assert get("detector_probe_duration_seconds_bucket", bucket) == 3


def test_the_result_label_is_the_probes_own_outcome_not_a_guess_from_text() -> None:
    """A 503 whose body says "timeout" is the target answering wrongly: `fail`."""
    metrics = Metrics()
    labels = {"probe": "dhl-label-de", "kind": "label_creation", "component": "carriers/dhl"}
    metrics.observe_probe(make_result(ok=False, error="HTTP 503 on POST /x: upstream timeout"))
    metrics.observe_probe(make_result(ok=False, error="Cannot connect", failure_kind="error"))
    get = metrics.registry.get_sample_value
    assert get("detector_probe_runs_total", {**labels, "result": "fail"}) == 1
    assert get("detector_probe_runs_total", {**labels, "result": "error"}) == 1


def test_self_check_gauge() -> None:
    metrics = Metrics()
    assert metrics.get("detector_self_check_ok") == 1
    metrics.set_self_check(False)
    assert metrics.get("detector_self_check_ok") == 0


def test_retain_probes_drops_removed_probes() -> None:
    metrics = Metrics()
    metrics.observe_probe(make_result(probe="kept"))
    metrics.observe_probe(make_result(ok=False, probe="gone"))
    metrics.observe_probe(make_result(probe="gone"))
    metrics.retain_probes(["kept"])
    get = metrics.registry.get_sample_value
    assert get("detector_probe_success", {"probe": "kept"}) == 1
    assert get("detector_probe_success", {"probe": "gone"}) is None
    assert b'probe="gone"' not in metrics.exposition()
    metrics.observe_probe(make_result(probe="gone"))  # comes back after another reload
    assert get("detector_probe_success", {"probe": "gone"}) == 1


# ---------------------------------------------------------------------------- engine


def test_component_status_is_one_hot_and_replaced() -> None:
    metrics = Metrics()
    get = metrics.registry.get_sample_value
    metrics.set_component_statuses(
        {
            "carriers/dhl": ComponentStatus.PARTIAL_OUTAGE,
            "carriers/ups": ComponentStatus.OPERATIONAL,
        }
    )
    for status in ComponentStatus:
        expected = 1.0 if status is ComponentStatus.PARTIAL_OUTAGE else 0.0
        assert get("detector_component_status", {"component": "carriers/dhl",
                                                 "status": status.value}) == expected  # fmt: skip
    metrics.set_component_statuses({"carriers/dhl": ComponentStatus.OPERATIONAL})
    assert get("detector_component_status", {"component": "carriers/ups",
                                             "status": "operational"}) is None  # fmt: skip


def test_failure_durations_and_open_incidents_replace_the_set() -> None:
    metrics = Metrics()
    get = metrics.registry.get_sample_value
    metrics.set_failure_durations({("a", "carriers/dhl"): 120.0, ("b", "carriers/ups"): 0.0})
    metrics.set_open_incidents({"a": 2, "b": 0})
    assert get("detector_failure_duration_seconds", {"rule": "a", "component": "carriers/dhl"}) == (
        120
    )
    assert get("detector_incidents_open", {"rule": "a"}) == 2
    metrics.set_failure_durations({("a", "carriers/dhl"): 180.0})  # rule b removed on reload
    metrics.set_open_incidents({"a": 1})
    assert get("detector_failure_duration_seconds", {"rule": "a", "component": "carriers/dhl"}) == (
        180
    )
    assert get("detector_failure_duration_seconds", {"rule": "b", "component": "carriers/ups"}) is (
        None
    )
    assert get("detector_incidents_open", {"rule": "b"}) is None
    assert get("detector_incidents_open", {"rule": "a"}) == 1


def test_incident_and_evaluation_counters() -> None:
    metrics = Metrics()
    get = metrics.registry.get_sample_value
    metrics.incident_opened("r", "sustained")
    metrics.incident_opened("r", "deploy")
    metrics.incident_opened("r", "deploy")
    metrics.incident_resolved("r")
    metrics.observe_evaluation(0.003)
    metrics.observe_evaluation(0.2)
    metrics.evaluation_failed()
    assert get("detector_incidents_opened_total", {"rule": "r", "cause": "deploy"}) == 2
    assert get("detector_incidents_opened_total", {"rule": "r", "cause": "sustained"}) == 1
    assert get("detector_incidents_resolved_total", {"rule": "r"}) == 1
    assert get("detector_rule_evaluation_duration_seconds_count") == 2
    assert get("detector_rule_evaluation_duration_seconds_bucket", {"le": "0.005"}) == 1
    assert get("detector_rule_evaluation_failures_total") == 1


def test_daemon_gauges_and_build_info() -> None:
    metrics = Metrics(version="2026.11.28")
    get = metrics.registry.get_sample_value
    assert get("detector_build_info", {"version": "2026.11.28"}) == 1
    metrics.config_reloaded(True, 1000.0)
    metrics.config_reloaded(False, 2000.0)
    assert get("detector_config_last_reload_successful") == 0
    assert get("detector_config_last_reload_success_timestamp_seconds") == 1000
    metrics.config_reloaded(True, 3000.0)
    assert get("detector_config_last_reload_successful") == 1
    assert get("detector_config_last_reload_success_timestamp_seconds") == 3000
    metrics.store_error()
    metrics.store_error()
    assert get("detector_store_errors_total") == 2
    metrics.set_leader(True)
    assert get("detector_is_leader") == 1
    metrics.set_leader(False)
    assert metrics.get("detector_is_leader") == 0


def test_each_instance_has_its_own_registry() -> None:
    first, second = Metrics(), Metrics()
    first.store_error()
    assert first.get("detector_store_errors_total") == 1
    assert second.get("detector_store_errors_total") == 0


# ---------------------------------------------------------------------------- exposition


def test_exposition_parses_and_names_every_contract_metric() -> None:
    metrics = busy_metrics()
    text = metrics.exposition().decode()
    names = {
        sample.name for family in text_string_to_metric_families(text) for sample in family.samples
    }
    assert names >= CONTRACT_SAMPLES
    assert all(name.startswith("detector_") for name in names)
    assert not any(name.endswith("_created") for name in names)
    assert metrics.content_type.startswith("text/plain; version=0.0.4")


@pytest.fixture(scope="session")
def promtool() -> str:
    return require_binary("promtool", "prometheus")


@pytest.mark.timeout(600)
def test_promtool_check_metrics(promtool: str) -> None:
    checked = subprocess.run(
        [promtool, "check", "metrics"],
        input=busy_metrics().exposition(),
        capture_output=True,
        timeout=60,
    )
    report = (checked.stdout + checked.stderr).decode()
    assert checked.returncode == 0, report
    assert report.strip() == "", report  # no lint warnings either
