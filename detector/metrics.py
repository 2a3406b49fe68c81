"""Prometheus metrics for the daemon, on a registry it owns (never the global one).

Metric names are a contract (DESIGN.md "Metrics"). Two kinds of update live here:

* Event counters and histograms (`observe_probe`, `incident_opened`, ...), updated as things
  happen. `observe_probe` runs for every probe result, so its labelled children are cached.
* Snapshot gauges (`set_component_statuses`, `set_failure_durations`, `set_open_incidents`)
  that the daemon replaces whole after each evaluation. They are served by a small custom
  collector from the last mapping given, so a removed rule or component simply disappears
  from the next scrape instead of leaving a stale series behind.

Probe outcome labels (`result`) come from the result itself (`ProbeResult.result`): `ok` the
check passed; `fail` the target answered, but wrongly; `error` the probe could not run
properly (timeout, connection refused, DNS, exception in the probe). The probe runner knows
which; nothing here guesses it from error text.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from typing import Final, Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.registry import Collector

from detector.model import ComponentStatus, ProbeResult
from detector.probe_metrics import Durations, ProbeFamilies

ProbeOutcome = Literal["ok", "fail", "error"]
PROBE_OUTCOMES: Final = ("ok", "fail", "error")

# One evaluation of every (rule, component) series: target <= 0.5 s for 100k series.
EVALUATION_DURATION_BUCKETS: Final = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip


class _SnapshotGauges(Collector):
    """Gauges served from the mappings last handed in; replacing a mapping is atomic."""

    def __init__(self) -> None:
        self.component_status: Mapping[str, ComponentStatus] = {}
        self.failure_durations: Mapping[tuple[str, str], float] = {}
        self.incidents_open: Mapping[str, int] = {}

    def describe(self) -> Iterable[Metric]:
        return self._families(
            component_status={}, failure_durations={}, incidents_open={}
        )  # names only, for the registry's duplicate check

    def collect(self) -> Iterable[Metric]:
        return self._families(
            component_status=self.component_status,
            failure_durations=self.failure_durations,
            incidents_open=self.incidents_open,
        )

    @staticmethod
    def _families(
        *,
        component_status: Mapping[str, ComponentStatus],
        failure_durations: Mapping[tuple[str, str], float],
        incidents_open: Mapping[str, int],
    ) -> Iterator[Metric]:
        status = GaugeMetricFamily(
            "detector_component_status",
            "Current status of each component, one-hot over the five Statuspage statuses.",
            labels=("component", "status"),
        )
        for component, current in component_status.items():
            for candidate in ComponentStatus:
                status.add_metric((component, candidate.value), 1.0 if candidate == current else 0)
        yield status
        failing = GaugeMetricFamily(
            "detector_failure_duration_seconds",
            "How long the current failure of a rule on a component has lasted; 0 when healthy.",
            labels=("rule", "component"),
        )
        for (rule, component), seconds in failure_durations.items():
            failing.add_metric((rule, component), seconds)
        yield failing
        open_incidents = GaugeMetricFamily(
            "detector_incidents_open", "Incidents not yet resolved, per rule.", labels=("rule",)
        )
        for rule, count in incidents_open.items():
            open_incidents.add_metric((rule,), count)
        yield open_incidents


class _Delegate(Collector):
    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterable[Metric]:
        return self._registry.collect()


class _WithoutCreated(_Delegate):
    def collect(self) -> Iterable[Metric]:
        for metric in self._registry.collect():
            metric.samples = [s for s in metric.samples if not s.name.endswith("_created")]
            yield metric


class Metrics:
    """Every detector_* metric, on `self.registry`."""

    content_type: Final = CONTENT_TYPE_PLAIN_0_0_4

    def __init__(self, version: str = "unknown") -> None:
        # Every family but the per-probe ones, which `ProbeFamilies` renders itself;
        # `registry` serves both, for `get` and for anyone collecting.
        self._rest = CollectorRegistry(auto_describe=True)
        self._probes = ProbeFamilies()
        self._add_engine_metrics(self._rest)
        self._add_daemon_metrics(self._rest, version)
        self._add_notification_metrics(self._rest)
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(self._probes)
        self.registry.register(_Delegate(self._rest))
        # (probe, kind, component, result) -> its kind's duration histogram
        self._probe_children: dict[tuple[str, str, str, str], Durations] = {}
        self._before_read: list[Callable[[], None]] = []

    def before_read(self, hook: Callable[[], None]) -> None:
        """Call `hook` before every read (a scrape, `get`): the pipeline counts probe runs in
        batches, and a reader must see every run that finished."""
        self._before_read.append(hook)

    def _catch_up(self) -> None:
        for hook in self._before_read:
            hook()

    def _add_engine_metrics(self, registry: CollectorRegistry) -> None:
        self._snapshots = _SnapshotGauges()
        registry.register(self._snapshots)
        self._opened = Counter(
            "detector_incidents_opened",
            "Incidents opened, by rule and cause (sustained or deploy).",
            ("rule", "cause"),
            registry=registry,
        )
        self._resolved = Counter(
            "detector_incidents_resolved",
            "Incidents resolved, by rule.",
            ("rule",),
            registry=registry,
        )
        self._evaluation = Histogram(
            "detector_rule_evaluation_duration_seconds",
            "Time taken by one evaluation of all rules.",
            buckets=EVALUATION_DURATION_BUCKETS,
            registry=registry,
        )
        self._evaluation_failures = Counter(
            "detector_rule_evaluation_failures",
            "Series (rule, component) whose evaluation raised, plus whole passes that did.",
            registry=registry,
        )

    def _add_daemon_metrics(self, registry: CollectorRegistry, version: str) -> None:
        self._reload_ok = Gauge(
            "detector_config_last_reload_successful",
            "1 if the last configuration or rules reload succeeded, else 0.",
            registry=registry,
        )
        self._reload_time = Gauge(
            "detector_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful configuration or rules reload.",
            registry=registry,
        )
        self._store_errors = Counter(
            "detector_store_errors", "Store operations that failed.", registry=registry
        )
        self._results_dropped = Counter(
            "detector_results_dropped",
            "Probe results dropped because the write buffer was full during a store outage.",
            registry=registry,
        )
        self._leader = Gauge(
            "detector_is_leader",
            "1 if this instance holds the lease and evaluates rules, else 0.",
            registry=registry,
        )
        self._self_check_ok = Gauge(
            "detector_self_check_ok",
            "0 while most self-check canaries fail (this instance's results are suspect).",
            registry=registry,
        )
        self._self_check_ok.set(1)
        build = Gauge(
            "detector_build_info", "Build information; always 1.", ("version",), registry=registry
        )
        build.labels(version).set(1)

    def _add_notification_metrics(self, registry: CollectorRegistry) -> None:
        self._notifications = Counter(
            "detector_notifications",
            "Notification attempts by channel and result: delivered, failed (retried), dead.",
            ("channel", "result"),
            registry=registry,
        )
        self._queue_depth = Gauge(
            "detector_notification_queue_depth",
            "Deliveries pending per channel (new ones and those waiting for a retry).",
            ("channel",),
            registry=registry,
        )

    def notification(self, channel: str, result: str) -> None:
        self._notifications.labels(channel, result).inc()

    def set_notification_queue_depths(self, depths: Mapping[str, int]) -> None:
        for channel, depth in depths.items():
            self._queue_depth.labels(channel).set(depth)

    # ------------------------------------------------------------------ probes (hot path)

    def observe_probe(self, result: ProbeResult) -> None:
        """Count one probe run under its own outcome (`result.result`)."""
        label = result.result
        key = (result.probe, result.kind, result.component, label)
        duration = self._probe_children.get(key)
        if duration is None:
            duration = self._probe_children_for(key)
        probes = self._probes
        probes.runs[key] += 1.0
        probes.success[key[0]] = 1.0 if label == "ok" else 0.0
        if result.latency_s is not None:
            duration.observe(result.latency_s)

    def _probe_children_for(self, key: tuple[str, str, str, str]) -> Durations:
        label = key[3]
        if label not in PROBE_OUTCOMES:
            raise ValueError(
                f"probe outcome {label!r}: expected one of {', '.join(PROBE_OUTCOMES)}"
            )
        duration = self._probe_children[key] = self._probes.add_series(key)
        return duration

    def retain_probes(self, probe_ids: Collection[str]) -> None:
        """Drop the series of probes no longer configured (after a reload)."""
        keep = set(probe_ids)
        for key in [key for key in self._probe_children if key[0] not in keep]:
            del self._probe_children[key]
            self._probes.remove_probe(key[0])

    # ------------------------------------------------------------------ engine snapshots

    def set_component_statuses(self, statuses: Mapping[str, ComponentStatus]) -> None:
        self._snapshots.component_status = dict(statuses)

    def set_failure_durations(self, durations: Mapping[tuple[str, str], float]) -> None:
        """(rule, component) -> seconds the current failure has lasted; replaces the set."""
        self._snapshots.failure_durations = dict(durations)

    def set_open_incidents(self, counts: Mapping[str, int]) -> None:
        """rule -> open incidents; pass every loaded rule (0 included); replaces the set."""
        self._snapshots.incidents_open = dict(counts)

    # ------------------------------------------------------------------ engine events

    def incident_opened(self, rule: str, cause: str) -> None:
        self._opened.labels(rule, cause).inc()

    def incident_resolved(self, rule: str) -> None:
        self._resolved.labels(rule).inc()

    def observe_evaluation(self, seconds: float) -> None:
        self._evaluation.observe(seconds)

    def evaluation_failed(self) -> None:
        self._evaluation_failures.inc()

    # ------------------------------------------------------------------ daemon

    def config_reloaded(self, ok: bool, now: float) -> None:
        self._reload_ok.set(1 if ok else 0)
        if ok:
            self._reload_time.set(now)

    def store_error(self) -> None:
        self._store_errors.inc()

    def results_dropped(self, count: int) -> None:
        self._results_dropped.inc(count)

    def set_self_check(self, ok: bool) -> None:
        self._self_check_ok.set(1 if ok else 0)

    def set_leader(self, leader: bool) -> None:
        self._leader.set(1 if leader else 0)

    # ------------------------------------------------------------------ exposition

    def exposition(self) -> bytes:
        """The Prometheus text format (0.0.4) of every metric; `content_type` goes with it.

        prometheus_client's `*_created` samples are left out: they are not part of the
        contract and would double the series count of every counter and histogram."""
        self._catch_up()
        rest = generate_latest(_WithoutCreated(self._rest))
        return self._probes.text() + rest

    def get(self, name: str, labels: Mapping[str, str] | None = None) -> float | None:
        """One sample's value, for tests and the CLI; None when absent."""
        self._catch_up()
        return self.registry.get_sample_value(name, dict(labels) if labels else None)
