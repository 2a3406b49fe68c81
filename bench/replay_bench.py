"""Replay throughput: parse an events file and replay it end to end (DESIGN.md target:
replay >= 200,000 results/s).

Generates a realistic history — components x probes, one result per probe per minute, spread
over the minute, with failure episodes of random length (some longer than open_after), slow
spells, deploys and a maintenance window — into a temporary events file with
`detector.events.write_events`, then times:

  parse       iter_events over the file (no engine)
  end-to-end  read + parse + replay through the shipped rules (file -> report), as
              `detector replay` does it (iter_replay_events)
  engine      replay of the events already in memory (engine and replay loop only)

and prints peak RSS (ru_maxrss) and, from a smaller second pass, the tracemalloc peak of the
end-to-end replay.

    .venv/bin/python bench/replay_bench.py [--results 1000000] [--tracemalloc-results 100000]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import resource
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from detector.engine import STATUS
from detector.engine.rulefile import load_rules
from detector.events import iter_events, iter_replay_events, write_events
from detector.model import Deploy, Event, Maintenance, ProbeResult, Rule
from detector.replay import ReplayReport, replay, report_to_dict

ROOT = Path(__file__).resolve().parent.parent
T0 = 1_795_860_000.0  # 2026-11-28T10:00:00Z
MARKETS = ("DE", "NL", "FR", "BE", "AT", "ES", "IT", "GB")


@dataclass(frozen=True)
class Probe:
    id: str
    kind: str
    component: str
    market: str
    offset: int  # seconds into each minute


@dataclass
class Episode:
    start: int  # minute
    stop: int
    markets: frozenset[str]  # failing markets (all probes when it is everything)
    slow: bool  # a latency spell rather than errors


def build_probes(components: int, per_component: int, rng: random.Random) -> list[Probe]:
    """Carriers (label creation per market + one tracking probe) and shop integrations."""
    probes = []
    for index in range(components):
        carrier = index % 5 != 4  # four in five components are carriers
        component = f"carriers/c{index:03d}" if carrier else f"integrations/shop{index:03d}"
        for slot in range(per_component):
            if carrier and slot == per_component - 1:
                kind = "tracking"
            else:
                kind = "label_creation" if carrier else "order_import"
            market = MARKETS[slot % len(MARKETS)]
            probes.append(
                Probe(f"{component}-{kind}-{slot}", kind, component, market, rng.randrange(60))
            )
    probes.sort(key=lambda p: p.offset)
    return probes


def episode_length(rng: random.Random) -> int:
    """Minutes: mostly blips, a fifth up to half an hour, one in ten well past open_after."""
    draw = rng.random()
    if draw < 0.7:
        return rng.randint(1, 10)
    if draw < 0.9:
        return rng.randint(10, 30)
    return rng.randint(31, 120)


def plan_episodes(
    components: list[str], minutes: int, rng: random.Random
) -> dict[str, list[Episode]]:
    """About one failure episode per component every six hours."""
    plan: dict[str, list[Episode]] = {c: [] for c in components}
    for component in components:
        minute = rng.randint(0, 360)
        while minute < minutes:
            length = episode_length(rng)
            everywhere = rng.random() < 0.5
            markets = frozenset(MARKETS) if everywhere else frozenset(rng.sample(MARKETS, 2))
            plan[component].append(Episode(minute, minute + length, markets, rng.random() < 0.1))
            minute += length + rng.randint(60, 720)
    return plan


def generate(results: int, components: int, per_component: int, seed: int) -> Iterator[Event]:
    """Sorted events: `results` probe results plus a few deploys and one maintenance."""
    rng = random.Random(seed)
    probes = build_probes(components, per_component, rng)
    minutes = -(-results // len(probes))
    plan = plan_episodes(sorted({p.component for p in probes}), minutes, rng)
    deploy_every = 45  # minutes
    maintenance_component = probes[0].component
    produced = 0
    for minute in range(minutes):
        base = T0 + minute * 60
        if minute % deploy_every == 0:
            named = tuple(sorted({rng.choice(probes).component for _ in range(3)}))
            yield Deploy(base, f"d-{minute}", "label-api", f"v{minute}", named, rng.random() < 0.05)
        if minute == minutes // 2:
            yield Maintenance(base, base + 3600, (maintenance_component,), "planned", "m-1")
        for probe in probes:
            if produced == results:
                return
            produced += 1
            episode = next((e for e in plan[probe.component] if e.start <= minute < e.stop), None)
            slow = failing = False
            if episode is not None and probe.market in episode.markets:
                slow = episode.slow
                failing = not slow and rng.random() < 0.9
            failing = failing or rng.random() < 0.002  # background noise
            latency = rng.uniform(6.0, 9.0) if slow else rng.uniform(0.15, 1.2)
            yield ProbeResult(
                at=base + probe.offset,
                probe=probe.id,
                kind=probe.kind,
                component=probe.component,
                ok=not failing,
                latency_s=round(latency, 3),
                error="HTTP 503" if failing else None,
                labels={"market": probe.market},
            )


def write_file(path: Path, args: argparse.Namespace, results: int) -> int:
    with open(path, "wb") as handle:
        return write_events(generate(results, args.components, args.probes, args.seed), handle)


def peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def timed_parse(path: Path) -> tuple[float, int]:
    gc.collect()
    start = time.perf_counter()
    with open(path, "rb") as handle:
        count = sum(1 for _ in iter_events(handle, str(path)))
    return time.perf_counter() - start, count


def timed_replay(path: Path, rules: tuple[Rule, ...]) -> tuple[float, float, ReplayReport]:
    """Wall and CPU seconds of one end-to-end replay: on a shared VM the wall time also holds
    what other guests took from this one, the CPU time does not."""
    gc.collect()
    start, cpu = time.perf_counter(), time.process_time()
    with open(path, "rb") as handle:
        report = replay(rules, iter_replay_events(handle, str(path)))
    return time.perf_counter() - start, time.process_time() - cpu, report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=int, default=1_000_000)
    parser.add_argument("--components", type=int, default=200)
    parser.add_argument("--probes", type=int, default=5, help="probes per component")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--repeat", type=int, default=1, help="end-to-end replays (best of)")
    parser.add_argument(
        "--tracemalloc-results",
        type=int,
        default=100_000,
        help="size of the second, traced pass (0 to skip)",
    )
    parser.add_argument("--rules", nargs="+", default=[str(ROOT / "rules")])
    parser.add_argument("--skip-engine-only", action="store_true")
    parser.add_argument(
        "--report-json", type=Path, help="write the end-to-end report here (to compare engines)"
    )
    args = parser.parse_args()
    rules = load_rules(args.rules).rules

    with tempfile.TemporaryDirectory(prefix="detector-bench-") as tmp:
        path = Path(tmp) / "events.jsonl"
        start = time.perf_counter()
        lines = write_file(path, args, args.results)
        generate_s = time.perf_counter() - start
        size_mb = path.stat().st_size / 1e6
        rows: list[tuple[str, float, str]] = [
            ("generate + write", generate_s, f"{lines:,} lines, {size_mb:,.0f} MB"),
        ]

        parse_s, parsed = timed_parse(path)
        rows.append(("parse (iter_events)", parse_s, f"{args.results / parse_s:,.0f} results/s"))

        runs = [timed_replay(path, rules) for _ in range(args.repeat)]
        replay_s, cpu_s = min(run[0] for run in runs), min(run[1] for run in runs)
        report = runs[-1][2]
        rss_replay = peak_rss_mb()
        if args.report_json:
            args.report_json.write_text(json.dumps(report_to_dict(report), sort_keys=True))
        rows.append(
            (
                "replay end-to-end",
                replay_s,
                f"{report.results / replay_s:,.0f} results/s (file -> report);"
                f" {report.results / cpu_s:,.0f} per CPU second; best of {args.repeat}",
            )
        )

        if not args.skip_engine_only:
            with open(path, "rb") as handle:
                events = list(iter_replay_events(handle, str(path)))
            gc.collect()
            start = time.perf_counter()
            replay(rules, events)
            engine_s = time.perf_counter() - start
            rows.append(
                (
                    "replay engine only",
                    engine_s,
                    f"{report.results / engine_s:,.0f} results/s (events in memory)",
                )
            )
            del events
        rss_all = peak_rss_mb()

        traced = None
        if args.tracemalloc_results:
            small = Path(tmp) / "small.jsonl"
            write_file(small, args, args.tracemalloc_results)
            gc.collect()
            tracemalloc.start()
            timed_replay(small, rules)
            traced = tracemalloc.get_traced_memory()[1] / 1e6
            tracemalloc.stop()

    print(
        f"replay bench: {args.results:,} results ({args.components} components x {args.probes}"
        f" probes, one result per probe per minute), {len(rules)} rules, python"
        f" {sys.version.split()[0]}, pid {os.getpid()}"
    )
    print(f"engine: {STATUS}")
    print(f"{'phase':<22} {'seconds':>9}  notes")
    for name, seconds, note in rows:
        print(f"{name:<22} {seconds:>9.2f}  {note}")
    print(f"{'peak RSS':<22} {rss_replay:>9.0f}  MB after the streaming end-to-end replay")
    if not args.skip_engine_only:
        print(f"{'peak RSS':<22} {rss_all:>9.0f}  MB after the in-memory pass (list of events)")
    if traced is not None:
        print(
            f"{'tracemalloc peak':<22} {traced:>9.1f}  MB, end-to-end replay of"
            f" {args.tracemalloc_results:,} results"
        )
    outcomes: dict[str, int] = {}
    for episode in report.episodes:
        outcomes[episode.outcome] = outcomes.get(episode.outcome, 0) + 1
    print(
        f"report: {len(report.incidents)} incidents, {len(report.episodes)} episodes {outcomes},"
        f" {parsed:,} events parsed"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
