"""The per-probe families, kept in plain containers and rendered as text directly.

`detector_probe_runs_total` and `detector_probe_success` have a series per probe (40,000
samples at 10,000 probes) and `detector_probe_duration_seconds` is observed on every run.
prometheus_client's children take a lock per update and escape every line on every scrape:
a scrape at 10,000 probes cost ~240 ms and an update ~2 µs. Here each series' text prefix is
escaped once, when it first appears, a scrape is one join, and an update is a dict or list
increment. `collect()` serves the same samples to the registry (`Metrics.get`, tests).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Iterator, Mapping
from typing import Final

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

RUNS_HELP: Final = "Probe runs by outcome: ok, fail (target answered wrong), error (could not run)."
SUCCESS_HELP: Final = "1 if the last run of the probe was ok, else 0."
DURATION_HELP: Final = "Probe run latency in seconds."
# 5 ms .. 30 s: label creation round trips sit around 0.2-2 s, timeouts at 10-30 s.
PROBE_DURATION_BUCKETS: Final = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0,
)  # fmt: skip

# The `le` label of each bucket, as prometheus_client spells it, and +Inf last.
_LE: Final = (*(floatToGoString(bound) for bound in PROBE_DURATION_BUCKETS), "+Inf")

RunKey = tuple[str, str, str, str]  # probe, kind, component, result


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class Durations:
    """One kind's latency histogram: a count per bucket (not cumulative) and the sum."""

    __slots__ = ("counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * len(_LE)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        # bisect_left: a value equal to a bound counts in that bucket (le = "<=")
        self.counts[bisect_left(PROBE_DURATION_BUCKETS, seconds)] += 1
        self.sum += seconds

    def cumulative(self) -> list[tuple[str, float]]:
        total, out = 0, []
        for bound, count in zip(_LE, list(self.counts), strict=True):
            total += count
            out.append((bound, float(total)))
        return out


class ProbeFamilies(Collector):
    """The three per-probe families over plain dicts and lists."""

    def __init__(self) -> None:
        self.runs: dict[RunKey, float] = {}
        self.success: dict[str, float] = {}
        self.durations: dict[str, Durations] = {}
        self._runs_prefix: dict[RunKey, str] = {}
        self._success_prefix: dict[str, str] = {}

    def add_series(self, key: RunKey) -> Durations:
        """A new (probe, kind, component, result): its counter at 0; its kind's histogram."""
        probe, kind, component, result = map(_label, key)
        self._runs_prefix[key] = (
            f'detector_probe_runs_total{{probe="{probe}",kind="{kind}",'
            f'component="{component}",result="{result}"}} '
        )
        self.runs[key] = 0.0
        self._success_prefix[key[0]] = f'detector_probe_success{{probe="{probe}"}} '
        durations = self.durations.get(key[1])
        if durations is None:
            durations = self.durations[key[1]] = Durations()
        return durations

    def remove_probe(self, probe: str) -> None:
        for key in [key for key in self.runs if key[0] == probe]:
            del self.runs[key], self._runs_prefix[key]
        self.success.pop(probe, None)
        self._success_prefix.pop(probe, None)

    def describe(self) -> Iterable[Metric]:
        return self._families({}, {}, {})

    def collect(self) -> Iterable[Metric]:
        return self._families(dict(self.runs), dict(self.success), dict(self.durations))

    @staticmethod
    def _families(
        runs: Mapping[RunKey, float],
        success: Mapping[str, float],
        durations: Mapping[str, Durations],
    ) -> Iterator[Metric]:
        counter = CounterMetricFamily(
            "detector_probe_runs", RUNS_HELP, labels=("probe", "kind", "component", "result")
        )
        for key, value in runs.items():
            counter.add_metric(key, value)
        yield counter
        gauge = GaugeMetricFamily("detector_probe_success", SUCCESS_HELP, labels=("probe",))
        for probe, value in success.items():
            gauge.add_metric((probe,), value)
        yield gauge
        histogram = HistogramMetricFamily(
            "detector_probe_duration_seconds", DURATION_HELP, labels=("kind",)
        )
        for kind, one in durations.items():
            histogram.add_metric((kind,), one.cumulative(), one.sum)
        yield histogram

    def text(self) -> bytes:
        # dict(...) copies in one step under the GIL: the event loop may add or drop series
        # (a reload) while a scrape renders in its worker thread; a series dropped in between
        # has no prefix any more and is left out.
        runs, success = dict(self.runs), dict(self.success)
        runs_prefix, success_prefix = dict(self._runs_prefix), dict(self._success_prefix)
        lines = [
            f"# HELP detector_probe_runs_total {RUNS_HELP}",
            "# TYPE detector_probe_runs_total counter",
        ]
        lines += [f"{runs_prefix[k]}{v!r}" for k, v in runs.items() if k in runs_prefix]
        lines.append(f"# HELP detector_probe_success {SUCCESS_HELP}")
        lines.append("# TYPE detector_probe_success gauge")
        lines += [f"{success_prefix[p]}{v!r}" for p, v in success.items() if p in success_prefix]
        lines.append(f"# HELP detector_probe_duration_seconds {DURATION_HELP}")
        lines.append("# TYPE detector_probe_duration_seconds histogram")
        for kind, one in dict(self.durations).items():
            series = f'kind="{_label(kind)}"'
            name = "detector_probe_duration_seconds"
            buckets = one.cumulative()  # count = the +Inf bucket of the same copy
            lines += [f'{name}_bucket{{{series},le="{le}"}} {n!r}' for le, n in buckets]
            lines.append(f"{name}_count{{{series}}} {buckets[-1][1]!r}")
            lines.append(f"{name}_sum{{{series}}} {one.sum!r}")
        return ("\n".join(lines) + "\n").encode()
