"""CPU and memory of the real daemon running N probes against the sandbox platform.

    .venv/bin/python bench/daemon_bench.py                 # 1,000 probes, 60 s interval, 120 s
    .venv/bin/python bench/daemon_bench.py --probes 10000 --seconds 180
    .venv/bin/python bench/daemon_bench.py --mix http      # http probes only

Starts `detector sandbox` on a free loopback port (its own process, so its CPU is not
counted), writes a config into a temporary directory (SQLite store there too) and starts
`detector run --config` as a subprocess. After a warm-up (default: one interval) it samples
the daemon's /proc/<pid>/stat (utime + stime, every thread) and /proc/<pid>/status (VmRSS)
over the measurement window, and reads /metrics at both ends of it to count the probe runs.

Probe mix (`--mix realistic`, the default): label_creation per carrier x market (60%),
tracking per carrier x market (20%), order_import per shop x market (10%) and http platform
feature checks (10%), over ~100 components. Rules: the shipped rules (rules/*.yaml, production
timings: 5-15 m windows, open after 30 m, resolve after 10 m), copied next to the config.
Production evaluation (15 s) and flush (5 s) intervals. A Prometheus-like scraper reads
/metrics every `--scrape-every` seconds (0: only at the window's ends) and its cost counts.

Reported: probe runs observed in the window and per probe (min/max against the expected
seconds/interval, so a starved probe shows), daemon CPU seconds, % of one core, µs CPU per
probe run, CPU per second (median/p90/max: bursts), how evenly the runs start over the
interval (from the results in the store), RSS (peak and end), mean probe latency per kind (a
saturated event loop shows up here first), the commonest errors, scheduler misfires from the
daemon's log, and the sandbox's CPU for reference. `--keep` keeps the directory with the
config, the logs and the SQLite store; `--detector CMD` benchmarks another build.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zlib
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from detector.sandbox import CARRIERS, SHOPS

MARKETS = ("NL", "DE", "FR", "BE", "ES", "IT", "AT", "GB")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
KB_PER_MB = 1024.0

ROOT = Path(__file__).resolve().parent.parent
SHIPPED_RULES = ROOT / "rules"
# `--mix http` probes carriers over http, which no shipped rule matches; this one does.
HTTP_CHECKS = """\
rules:
  - name: http-checks
    match: {kind: http, component: "carriers/*"}
    window: 5m
    impact:
      - {status: major_outage, when: error_ratio >= 0.9}
      - {status: partial_outage, when: error_ratio >= 0.3}
    open_after: 30m
    resolve_after: 10m
    inhibited_by: [platform-api]
"""

# ----------------------------------------------------------------------------- config


def _carriers(count: int) -> list[str]:
    """The sandbox's carriers, then made-up ones (the sandbox accepts any carrier slug)."""
    extra = [f"carrier{n:02d}" for n in range(count - len(CARRIERS))]
    return [*CARRIERS, *extra][:count]


def _spread(count: int, combos: list[tuple[str, str]]) -> Iterator[tuple[str, str, int]]:
    """`count` (component, market, n) picks, round-robin over the combos."""
    for n in range(count):
        component, market = combos[n % len(combos)]
        yield component, market, n // len(combos)


def probes_yaml(total: int, mix: str, components: int) -> tuple[list[str], list[str]]:
    """(component lines, probe lines) of the generated config."""
    carriers = _carriers(max(components - len(SHOPS) - 3, 1))
    comps = ["  - {id: sendcloud/api, name: Sendcloud API}"]
    comps += ["  - {id: sendcloud/panel, name: Sendcloud panel}"]
    comps += ["  - {id: sendcloud/tracking, name: Tracking page}"]
    comps += [f"  - {{id: carriers/{c}, name: {c.upper()}}}" for c in carriers]
    comps += [f"  - {{id: integrations/{s}, name: {s.title()}}}" for s in SHOPS]
    lines: list[str] = []
    if mix == "http":
        combos = [(f"carriers/{c}", m) for c in carriers for m in MARKETS]
        for component, market, n in _spread(total, combos):
            slug = component.split("/")[1]
            lines.append(
                f"  - {{id: http-{slug}-{market.lower()}-{n}, kind: http, component: {component},"
                f" labels: {{market: {market}}}}}"
            )
        return comps, lines
    counts = {"label_creation": total * 6 // 10, "tracking": total * 2 // 10}
    counts["order_import"] = total // 10
    counts["http"] = total - sum(counts.values())
    label_combos = [(f"carriers/{c}", m) for c in carriers for m in MARKETS]
    shop_combos = [(f"integrations/{s}", m) for s in SHOPS for m in MARKETS]
    for kind, word, combos in [
        ("label_creation", "label", label_combos),
        ("tracking", "tracking", label_combos),
        ("order_import", "import", shop_combos),
    ]:
        for component, market, n in _spread(counts[kind], combos):
            slug = component.split("/")[1]
            lines.append(
                f"  - {{id: {slug}-{word}-{market.lower()}-{n}, kind: {kind},"
                f" component: {component}, labels: {{market: {market}}}}}"
            )
    features = [
        ("api", "sendcloud/api", "{}"),
        ("feature-panel", "sendcloud/panel", "{path: /panel/, send_credentials: false}"),
        ("feature-tracking", "sendcloud/tracking", "{path: /tracking/dhl}"),
    ]
    for n in range(counts["http"]):
        name, component, settings = features[n % len(features)]
        lines.append(
            f"  - {{id: {name}-{n}, kind: http, component: {component}, settings: {settings}}}"
        )
    return comps, lines


def write_config(
    directory: Path, *, probes: int, mix: str, components: int, interval: float, sandbox: str
) -> Path:
    rules = directory / "rules"
    rules.mkdir()
    for path in sorted(SHIPPED_RULES.glob("*.yaml")):
        shutil.copy(path, rules / path.name)
    if mix == "http":
        (rules / "http-checks.yaml").write_text(HTTP_CHECKS)
    comps, lines = probes_yaml(probes, mix, components)
    config = directory / "detector.yaml"
    config.write_text(
        "\n".join(
            [
                "# Generated by bench/daemon_bench.py",
                f"listen: 127.0.0.1:{free_port()}",
                f"store: sqlite:///{directory / 'bench.db'}",
                "rules: [rules/]",
                "evaluation_interval: 15s",
                "flush_interval: 5s",
                "log_format: json",
                "log_level: info",
                "probe_defaults:",
                f"  target: {sandbox}",
                f"  interval: {interval:g}s",
                f"  timeout: {min(10.0, interval):g}s",
                "  credentials: {username_env: SANDBOX_USERNAME, password_env: SANDBOX_PASSWORD}",
                "components:",
                *comps,
                "probes:",
                *lines,
                "",
            ]
        )
    )
    return config


# ----------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def detector_command() -> list[str]:
    script = Path(sys.executable).with_name("detector")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from detector.cli import main; sys.exit(main())"]


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            command = " ".join(map(str, proc.args)) if isinstance(proc.args, list) else proc.args
            raise SystemExit(f"{command!s} exited with {proc.returncode} before serving {url}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                resp.read()
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    raise SystemExit(f"{url} not up after {timeout:g}s")


def cpu_seconds(pid: int) -> float:
    """utime + stime of every thread of the process, in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # fields 14 and 15 of proc(5)


def memory_mb(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak RSS since start) in MB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / KB_PER_MB
    return values


@contextlib.contextmanager
def started(
    command: list[str], log: Path, env: dict[str, str]
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# ----------------------------------------------------------------------------- metrics

_SAMPLE = re.compile(r"^(?P<name>[a-z_]+)(?:\{(?P<labels>[^}]*)\})? (?P<value>\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


@dataclass
class Scrape:
    runs: dict[str, float]  # probe -> runs (every result label)
    results: Counter[str]  # result label -> runs
    duration_sum: dict[str, float]  # kind -> seconds
    duration_count: dict[str, float]  # kind -> observations
    evaluation_sum: float
    evaluation_count: float


def scrape(url: str) -> Scrape:
    with urllib.request.urlopen(url, timeout=30) as resp:
        text = resp.read().decode()
    runs: dict[str, float] = defaultdict(float)
    results: Counter[str] = Counter()
    dsum: dict[str, float] = {}
    dcount: dict[str, float] = {}
    esum = ecount = 0.0
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match is None:
            continue
        name, value = match["name"], float(match["value"])
        labels = dict(_LABEL.findall(match["labels"] or ""))
        if name == "detector_probe_runs_total":
            runs[labels["probe"]] += value
            results[labels["result"]] += int(value)
        elif name == "detector_probe_duration_seconds_sum":
            dsum[labels["kind"]] = value
        elif name == "detector_probe_duration_seconds_count":
            dcount[labels["kind"]] = value
        elif name == "detector_rule_evaluation_duration_seconds_sum":
            esum = value
        elif name == "detector_rule_evaluation_duration_seconds_count":
            ecount = value
    return Scrape(dict(runs), results, dsum, dcount, esum, ecount)


# ----------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--probes", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=120.0, help="measurement window")
    parser.add_argument("--interval", type=float, default=60.0, help="every probe's interval")
    parser.add_argument("--warmup", type=float, help="before measuring (default: one interval)")
    parser.add_argument("--mix", choices=["realistic", "http"], default="realistic")
    parser.add_argument("--components", type=int, default=100)
    parser.add_argument("--scrape-every", type=float, default=15.0, help="0: only at the ends")
    parser.add_argument("--sample-every", type=float, default=1.0, help="CPU, RSS sampling period")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument(
        "--detector", metavar="CMD", help="command that runs the detector CLI (default: the venv's)"
    )
    args = parser.parse_args()
    warmup = args.interval if args.warmup is None else args.warmup

    tmp = Path(tempfile.mkdtemp(prefix="detector-bench-"))
    env = {**os.environ, "SANDBOX_USERNAME": "bench", "SANDBOX_PASSWORD": "bench"}
    env.pop("DETECTOR_API_TOKEN", None)
    sandbox_port = free_port()
    sandbox_url = f"http://127.0.0.1:{sandbox_port}"
    config = write_config(
        tmp,
        probes=args.probes,
        mix=args.mix,
        components=args.components,
        interval=args.interval,
        sandbox=sandbox_url,
    )
    listen = re.search(r"^listen: (\S+)$", config.read_text(), re.M)
    assert listen is not None
    api = f"http://{listen[1]}"
    cli = args.detector.split() if args.detector else detector_command()
    try:
        check = subprocess.run([*cli, "check", "--config", str(config)], env=env, check=False)
        if check.returncode != 0:
            raise SystemExit(f"generated config rejected; see {config}")
        sandbox_cmd = [*cli, "sandbox", "--port", str(sandbox_port)]
        with started(sandbox_cmd, tmp / "sandbox.log", env) as sandbox:
            wait_http(f"{sandbox_url}/_sandbox/faults", sandbox)
            daemon_cmd = [*cli, "run", "--config", str(config)]
            with started(daemon_cmd, tmp / "daemon.log", env) as daemon:
                wait_http(f"{api}/healthz", daemon)
                print(
                    f"daemon pid {daemon.pid}, sandbox pid {sandbox.pid}, {args.probes} probes"
                    f" ({args.mix}), warming up {warmup:g}s ...",
                    file=sys.stderr,
                )
                time.sleep(warmup)
                report = measure(args, daemon, sandbox, api)
            misfires = count_misfires(tmp / "daemon.log")
        starts = run_starts(
            tmp / "bench.db", report, args.interval
        )  # the daemon flushed on SIGTERM
        print_report(args, warmup, report, misfires, starts, tmp)
    finally:
        if args.keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


@dataclass
class Report:
    window: float
    cpu: float
    sandbox_cpu: float
    rss_end: float
    rss_peak_window: float
    rss_hwm: float
    before: Scrape
    after: Scrape
    scrapes: int
    cpu_per_second: list[float]  # % of one core in each sampling period
    wall_start: float  # time.time() at the window's ends, to find its results in the store
    wall_end: float


def measure(
    args: argparse.Namespace,
    daemon: subprocess.Popen[bytes],
    sandbox: subprocess.Popen[bytes],
    api: str,
) -> Report:
    metrics_url = f"{api}/metrics"
    before = scrape(metrics_url)  # outside the window: its cost is not counted
    cpu0, sandbox0 = cpu_seconds(daemon.pid), cpu_seconds(sandbox.pid)
    wall_start = time.time()
    start = time.monotonic()
    end = start + args.seconds
    next_scrape = start + args.scrape_every if args.scrape_every > 0 else float("inf")
    peak, scrapes = 0.0, 0
    timeline: list[float] = []
    last_cpu, last_at = cpu0, start
    while (now := time.monotonic()) < end:
        if daemon.poll() is not None:
            raise SystemExit(f"daemon exited with {daemon.returncode} during the measurement")
        peak = max(peak, memory_mb(daemon.pid)["VmRSS"])
        if now - last_at >= 0.5 * args.sample_every:
            used = cpu_seconds(daemon.pid)
            timeline.append(100 * (used - last_cpu) / (now - last_at))
            last_cpu, last_at = used, now
        if now >= next_scrape:
            scrape(metrics_url)  # a Prometheus-like scraper: part of the daemon's real load
            scrapes += 1
            next_scrape += args.scrape_every
        time.sleep(max(0.0, min(args.sample_every, end - time.monotonic())))
    window = time.monotonic() - start
    wall_end = time.time()
    cpu, sandbox_cpu = cpu_seconds(daemon.pid) - cpu0, cpu_seconds(sandbox.pid) - sandbox0
    memory = memory_mb(daemon.pid)
    after = scrape(metrics_url)
    return Report(
        window=window,
        cpu=cpu,
        sandbox_cpu=sandbox_cpu,
        rss_end=memory["VmRSS"],
        rss_peak_window=max(peak, memory["VmRSS"]),
        rss_hwm=memory["VmHWM"],
        before=before,
        after=after,
        scrapes=scrapes,
        cpu_per_second=timeline,
        wall_start=wall_start,
        wall_end=wall_end,
    )


def count_misfires(log: Path) -> int:
    text = log.read_text(errors="replace")
    return text.count("was missed by") + text.count("maximum number of running instances")


@dataclass
class Starts:
    """When the window's probe runs started, from the store's results."""

    offsets: list[float]  # start time - window start, seconds
    errors: Counter[str]
    lateness: list[float]  # start time - scheduled time (daemon.probe_phase), seconds, sorted


def run_starts(db: Path, r: Report, interval: float) -> Starts:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        rows = conn.execute(
            "SELECT at - COALESCE(latency_s, 0), error, probe FROM probe_results"
            " WHERE at > ? AND at <= ?",
            (r.wall_start, r.wall_end),
        ).fetchall()
    errors: Counter[str] = Counter(re.sub(r"\d+", "N", e)[:80] for _, e, _ in rows if e)
    return Starts(
        [at - r.wall_start for at, _, _ in rows],
        errors,
        sorted(lateness(at, probe, interval) for at, _, probe in rows),
    )


def lateness(start: float, probe: str, interval: float) -> float:
    """How late a run started against its slot (`detector.daemon.probe_phase`: a fixed offset
    within the interval from crc32 of the id). The start is the result's `at - latency_s`, so
    this includes any wait between the scheduler's wake-up and the probe's first request."""
    offset = zlib.crc32(probe.encode()) / 2**32 * interval
    late = (start - offset) % interval
    return late - interval if late > interval / 2 else late  # a little early reads negative


def percentile(ordered: list[float], share: float) -> float:
    return ordered[min(int(share * len(ordered)), len(ordered) - 1)] if ordered else float("nan")


def burstiness(offsets: list[float], interval: float) -> tuple[float, float]:
    """(share of run starts in the busiest tenth of the interval, peak/mean starts a second)."""
    if not offsets:
        return 0.0, 0.0
    phase = Counter(int(offset % interval) for offset in offsets)
    seconds = max(int(interval), 1)
    busiest = sorted((phase.get(n, 0) for n in range(seconds)), reverse=True)
    top = sum(busiest[: max(seconds // 10, 1)]) / len(offsets)
    per_second = Counter(int(offset) for offset in offsets)
    mean = len(offsets) / max(max(offsets) - min(offsets), 1.0)
    return top, max(per_second.values()) / mean


def print_report(
    args: argparse.Namespace,
    warmup: float,
    r: Report,
    misfires: int,
    starts: Starts,
    tmp: Path,
) -> None:
    runs_per_probe = [
        r.after.runs.get(probe, 0.0) - r.before.runs.get(probe, 0.0) for probe in r.after.runs
    ]
    runs_per_probe += [0.0] * (args.probes - len(runs_per_probe))  # never ran at all
    runs = sum(runs_per_probe)
    results = r.after.results - r.before.results
    expected = r.window / args.interval
    spread = Counter(int(n) for n in runs_per_probe)
    evaluations = r.after.evaluation_count - r.before.evaluation_count
    eval_ms = 1000 * (r.after.evaluation_sum - r.before.evaluation_sum) / max(evaluations, 1)
    row = "{:<38} {}"
    print(f"# detector daemon bench ({args.mix} mix)")
    print(row.format("probes", f"{args.probes} at {args.interval:g}s interval"))
    print(row.format("window", f"{r.window:.1f}s after {warmup:g}s warm-up"))
    print(row.format("probe runs observed", f"{runs:.0f} ({dict(sorted(results.items()))})"))
    print(row.format("expected runs", f"{args.probes * expected:.0f} ({expected:.2f} per probe)"))
    print(
        row.format(
            "runs per probe min/max",
            f"{min(runs_per_probe):.0f} / {max(runs_per_probe):.0f}"
            f" (histogram {dict(sorted(spread.items()))})",
        )
    )
    print(row.format("daemon CPU seconds", f"{r.cpu:.2f}"))
    print(row.format("daemon CPU % of one core", f"{100 * r.cpu / r.window:.1f}%"))
    print(row.format("µs CPU per probe run", f"{1e6 * r.cpu / max(runs, 1):.0f}"))
    if r.cpu_per_second:
        timeline = sorted(r.cpu_per_second)
        p90 = timeline[int(0.9 * (len(timeline) - 1))]
        print(
            row.format(
                f"CPU % per {args.sample_every:g}s median/p90/max",
                f"{statistics.median(timeline):.0f}% / {p90:.0f}% / {timeline[-1]:.0f}%",
            )
        )
    top, peak = burstiness(starts.offsets, args.interval)
    print(
        row.format(
            "run starts: busiest 10% of interval",
            f"{100 * top:.0f}% of runs (even spread: 10%); peak second {peak:.1f}x the mean",
        )
    )
    late = starts.lateness
    print(
        row.format(
            "start lateness p50 / p99 / max",
            f"{1000 * percentile(late, 0.5):.0f} / {1000 * percentile(late, 0.99):.0f}"
            f" / {1000 * (late[-1] if late else float('nan')):.0f} ms (target p99 <= 1000 ms)",
        )
    )
    print(row.format("RSS MB peak (window) / end", f"{r.rss_peak_window:.1f} / {r.rss_end:.1f}"))
    print(row.format("RSS MB high-water mark (VmHWM)", f"{r.rss_hwm:.1f}"))
    print(row.format("evaluations, mean duration", f"{evaluations:.0f}, {eval_ms:.1f} ms"))
    print(row.format("/metrics scrapes in window", f"{r.scrapes} (every {args.scrape_every:g}s)"))
    print(row.format("scheduler misfires (daemon log)", f"{misfires}"))
    for kind in sorted(r.after.duration_count):
        count = r.after.duration_count[kind] - r.before.duration_count.get(kind, 0.0)
        total = r.after.duration_sum[kind] - r.before.duration_sum.get(kind, 0.0)
        mean = 1000 * total / count if count else float("nan")
        print(row.format(f"mean latency {kind}", f"{mean:.1f} ms over {count:.0f} runs"))
    stored = len(starts.offsets)
    for error, count in starts.errors.most_common(3):
        print(row.format("error (store)", f"{count} of {stored} results: {error}"))
    print(
        row.format(
            "sandbox CPU (reference)",
            f"{r.sandbox_cpu:.2f}s, {100 * r.sandbox_cpu / r.window:.1f}% of one core",
        )
    )
    if args.keep:
        print(row.format("files", str(tmp)))


if __name__ == "__main__":
    sys.exit(main())
