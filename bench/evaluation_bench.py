"""One rule evaluation over S (rule, component) series (DESIGN.md target: 100,000 series in
<= 0.5 s, cost linear in series).

For each size: an Engine with one rule matching every component, one result per series
(a share of them failing, so episodes start), then timed:

  first   evaluate(now) with every series new: each one is stepped
  steady  one more result per series a minute later, evaluate again: each one is stepped,
          its window evicts and re-judges (the daemon's every-minute pass)
  idle    evaluate once more with nothing new: nothing is due (the incremental path)

Prints seconds and microseconds per series, best of --repeat runs.

    .venv/bin/python bench/evaluation_bench.py [--sizes 10000 50000 100000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import time
from collections.abc import Callable

from detector.engine import Engine
from detector.engine.when import parse_when
from detector.model import ComponentStatus, Impact, Match, ProbeResult, Rule

T0 = 1_795_860_000.0  # 2026-11-28T10:00:00Z


def bench_rule() -> Rule:
    """The shape of the shipped carrier rule, matching every component."""
    return Rule(
        name="all-components",
        match=Match(kind="label_creation", component="*"),
        impact=(
            Impact(ComponentStatus.MAJOR_OUTAGE, parse_when("error_ratio >= 0.9")),
            Impact(ComponentStatus.PARTIAL_OUTAGE, parse_when("error_ratio >= 0.3")),
            Impact(ComponentStatus.DEGRADED_PERFORMANCE, parse_when("latency_p95 > 5s")),
        ),
        window=300.0,
        title="{component_name}: label creation failing{markets}",
        message="Creating labels with {component_name} fails.",
    )


def results_at(moment: float, size: int, failing: float, rng: random.Random) -> list[ProbeResult]:
    return [
        ProbeResult(
            at=moment,
            probe=f"probe-{index}",
            kind="label_creation",
            component=f"carriers/c{index:06d}",
            ok=rng.random() >= failing,
            latency_s=rng.uniform(0.1, 1.0),
            labels={"market": "DE"},
        )
        for index in range(size)
    ]


def timed(action: Callable[[], object]) -> float:
    gc.collect()
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def run_once(size: int, failing: float, seed: int) -> dict[str, float]:
    rng = random.Random(seed)
    engine = Engine([bench_rule()])
    for result in results_at(T0, size, failing, rng):
        engine.observe(result)
    assert len(engine.series) == size
    first = timed(lambda: engine.evaluate(T0))
    for result in results_at(T0 + 60, size, failing, rng):
        engine.observe(result)
    steady = timed(lambda: engine.evaluate(T0 + 60))
    idle = timed(lambda: engine.evaluate(T0 + 61))
    return {"first": first, "steady": steady, "idle": idle}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 50_000, 100_000])
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    parser.add_argument("--failing", type=float, default=0.1, help="share of failing results")
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()

    print(
        f"evaluation bench: one rule, one series per component, {args.failing:.0%} failing,"
        f" best of {args.repeat}, python {sys.version.split()[0]}"
    )
    header = f"{'series':>9} {'first s':>9} {'µs/series':>10} {'steady s':>9} {'µs/series':>10}"
    print(f"{header} {'idle s':>9}")
    for size in args.sizes:
        runs = [run_once(size, args.failing, args.seed + n) for n in range(args.repeat)]
        best = {key: min(run[key] for run in runs) for key in runs[0]}
        print(
            f"{size:>9,} {best['first']:>9.3f} {best['first'] / size * 1e6:>10.2f}"
            f" {best['steady']:>9.3f} {best['steady'] / size * 1e6:>10.2f}"
            f" {best['idle']:>9.4f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
