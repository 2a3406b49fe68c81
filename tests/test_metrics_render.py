"""The per-probe families are rendered as text directly: same samples as the collector."""

from __future__ import annotations

from factories import make_result
from prometheus_client.parser import text_string_to_metric_families

from detector.metrics import Metrics


def samples(text: str, prefix: str = "detector_probe_") -> dict[tuple[str, frozenset], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith(prefix)
    }


def test_fast_text_equals_the_collector_even_for_awkward_labels() -> None:
    metrics = Metrics()
    for probe in ('a"b', "back\\slash", "new\nline", "plain"):
        metrics.observe_probe(make_result(probe=probe))
        metrics.observe_probe(make_result(probe=probe, ok=False, error="x", failure_kind="error"))
    metrics.observe_probe(make_result(probe="plain"))
    text = metrics.exposition().decode()
    assert text.count("# TYPE detector_probe_runs_total counter") == 1
    from_registry = {
        (s.name, frozenset(s.labels.items())): s.value
        for family in metrics.registry.collect()
        for s in family.samples
        if s.name.startswith("detector_probe_")
    }
    assert samples(text) == from_registry
    assert from_registry[("detector_probe_success", frozenset({("probe", "plain")}))] == 1.0
    runs = {"probe": "plain", "kind": "label_creation", "component": "carriers/dhl"}
    assert metrics.get("detector_probe_runs_total", {**runs, "result": "ok"}) == 2
    assert metrics.get("detector_probe_runs_total", {**runs, "result": "error"}) == 1


def test_retained_probes_only_after_a_reload() -> None:
    metrics = Metrics()
    metrics.observe_probe(make_result(probe="gone"))
    metrics.observe_probe(make_result(probe="kept"))
    metrics.retain_probes(["kept"])
    text = metrics.exposition().decode()
    assert 'probe="gone"' not in text and 'probe="kept"' in text
    assert metrics.get("detector_probe_success", {"probe": "gone"}) is None
    metrics.observe_probe(make_result(probe="gone"))  # configured again: counts from zero
    assert metrics.get("detector_probe_success", {"probe": "gone"}) == 1


def test_duration_buckets_are_cumulative_and_a_bound_counts_as_le() -> None:
    """`le` means <=: a run of exactly 0.5 s is in the 0.5 bucket; text and collector agree."""
    metrics = Metrics()
    for latency in (0.004, 0.5, 0.51, 45.0):  # 45 s: above the last bound, only in +Inf
        metrics.observe_probe(make_result(latency_s=latency))
    metrics.observe_probe(make_result(probe="other", kind="http", latency_s=0.02))
    metrics.observe_probe(make_result(latency_s=None, ok=False, error="x", failure_kind="error"))
    text = metrics.exposition().decode()
    assert text.count("# TYPE detector_probe_duration_seconds histogram") == 1
    bucket = "detector_probe_duration_seconds_bucket"
    lc = {"kind": "label_creation"}
    assert metrics.get(bucket, {**lc, "le": "0.005"}) == 1
    assert metrics.get(bucket, {**lc, "le": "0.25"}) == 1
    assert metrics.get(bucket, {**lc, "le": "0.5"}) == 2
    assert metrics.get(bucket, {**lc, "le": "1.0"}) == 3
    assert metrics.get(bucket, {**lc, "le": "30.0"}) == 3
    assert metrics.get(bucket, {**lc, "le": "+Inf"}) == 4
    assert metrics.get("detector_probe_duration_seconds_count", lc) == 4
    assert metrics.get("detector_probe_duration_seconds_sum", lc) == 0.004 + 0.5 + 0.51 + 45.0
    assert metrics.get("detector_probe_duration_seconds_count", {"kind": "http"}) == 1
    from_registry = {
        (s.name, frozenset(s.labels.items())): s.value
        for family in metrics.registry.collect()
        for s in family.samples
        if s.name.startswith("detector_probe_duration")
    }
    assert samples(text, "detector_probe_duration") == from_registry
