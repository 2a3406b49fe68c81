"""The public read path under a crowd: `wrk` against a running daemon's summary.json and `/`.

    .venv/bin/python bench/read_load_bench.py                        # 15 s per path, 64 conns
    .venv/bin/python bench/read_load_bench.py --seconds 30 --connections 128 --gzip
    .venv/bin/python bench/read_load_bench.py --detector /work/main/.venv/bin/detector

DESIGN.md target: `/api/v2/summary.json` and `/` at >= 2,000 requests/s with p99 <= 50 ms,
while every probe still starts on time. Starts `detector sandbox` and `detector run` (a
config like bench/daemon_bench.py writes: `--probes` probes every `--interval` seconds, the
shipped rules, SQLite in a temporary directory) as their own processes on loopback, waits
`--warmup` seconds, then runs `wrk -t2 -c<connections> -d<seconds>s --latency` against each
path in turn (Debian package `wrk`). Reports requests/s, p50/p99/max latency, non-2xx
responses, the daemon's CPU during each run, and probe lateness over the whole load: each
run's start (from the store's results) against the probe's fixed phase in its interval
(`detector.daemon.probe_phase`), p50/p99/max. `--gzip` sends `Accept-Encoding: gzip` as
browsers do. `--outage` starts sandbox faults (DHL labels failing in DE, the Sendcloud API erroring)
before the warm-up, opens an incident on each through the write API and posts an update to
one every `--update-every` seconds during the load: the page is read hardest exactly then,
and every accepted write makes the crowd wait for a fresh rendering. Bounded: about
warm-up + 2 x seconds + start-up.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from daemon_bench import (  # a sibling script, not a package
    cpu_seconds,
    detector_command,
    free_port,
    started,
    wait_http,
    write_config,
)

PATHS = ("/api/v2/summary.json", "/")
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


@dataclass
class Load:
    path: str
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    non_2xx: int
    errors: str
    cpu_percent: float


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS[unit]


def run_wrk(base: str, path: str, args: argparse.Namespace, daemon_pid: int) -> Load:
    command = ["wrk", "-t2", f"-c{args.connections}", f"-d{args.seconds:g}s", "--latency"]
    if args.gzip:
        command += ["-H", "Accept-Encoding: gzip"]
    cpu0, wall0 = cpu_seconds(daemon_pid), time.monotonic()
    out = subprocess.run([*command, base + path], capture_output=True, text=True, check=True).stdout
    cpu = (cpu_seconds(daemon_pid) - cpu0) / (time.monotonic() - wall0)
    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)\s*$", out, re.MULTILINE))
    if "99" not in latency:
        raise SystemExit(f"cannot read wrk's output:\n{out}")
    found = re.search(r"Latency\s+\S+\s+\S+\s+(\S+)", out)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return Load(
        path=path,
        requests_per_second=float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        p50_ms=_ms(latency["50"]),
        p99_ms=_ms(latency["99"]),
        max_ms=_ms(found.group(1)) if found else float("nan"),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        errors=errors.group(1) if errors else "none",
        cpu_percent=100 * cpu,
    )


def lateness(db: Path, since: float, until: float, interval: float) -> list[float]:
    """Seconds each probe run started after its phase (negative: early), for runs in the span."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        rows = conn.execute(
            "SELECT probe, at - COALESCE(latency_s, 0) FROM probe_results WHERE at > ? AND at <= ?",
            (since, until),
        ).fetchall()
    late = []
    for probe, start in rows:
        offset = zlib.crc32(probe.encode()) / 2**32 * interval
        delay = (start - offset) % interval
        late.append(delay - interval if delay > interval / 2 else delay)
    return late


OUTAGE = (
    {"component": "carriers/dhl", "mode": "error", "market": "DE"},
    {"component": "sendcloud/api", "mode": "error"},
)
TOKEN = "bench-token"  # the daemon reads it from DETECTOR_API_TOKEN


def _post(url: str, body: Mapping[str, object], token: str = "") -> dict[str, object]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, json.dumps(body).encode(), headers, method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        answer: dict[str, object] = json.loads(response.read())
        return answer


def start_outage(sandbox: str, base: str, seconds: float) -> str:
    """Faults in the sandbox and an open incident on each faulty component; the first's id."""
    ids = []
    for fault in OUTAGE:
        _post(f"{sandbox}/_sandbox/faults", {**fault, "seconds": int(seconds)})
        opened = {"component": fault["component"], "title": f"{fault['component']} failing",
                  "body": "Requests fail. We are investigating."}  # fmt: skip
        ids.append(str(_post(f"{base}/api/v1/incidents", opened, TOKEN)["id"]))
    return ids[0]


def keep_updating(base: str, incident: str, every: float, stop: threading.Event) -> None:
    """On-call posting updates during the load: each one renders every snapshot afresh."""
    n = 0
    while not stop.wait(every):
        n += 1
        update = {"status": "identified", "body": f"Still failing; update {n}."}
        _post(f"{base}/api/v1/incidents/{incident}/updates", update, TOKEN)


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--probes", type=int, default=300)
    parser.add_argument("--interval", type=float, default=10.0, help="every probe's interval")
    parser.add_argument("--seconds", type=float, default=15.0, help="wrk duration per path")
    parser.add_argument("--warmup", type=float, default=12.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--gzip", action="store_true", help="send Accept-Encoding: gzip")
    parser.add_argument("--outage", action="store_true", help="faults and incident updates")
    parser.add_argument("--update-every", type=float, default=2.0, help="with --outage")
    parser.add_argument("--detector", metavar="CMD", help="the detector CLI (default: the venv's)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:  # the Debian package, installed when missing
        for command in (["apt-get", "install", "-y", "-q", "wrk"], ["apt-get", "update", "-q"]):
            subprocess.run(command, capture_output=True, check=False)
            if command[1] == "install" and shutil.which("wrk"):
                break
        else:
            subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], capture_output=True)
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found, and apt-get could not install it")
    cli = args.detector.split() if args.detector else detector_command()
    env = {**os.environ, "SANDBOX_USERNAME": "bench", "SANDBOX_PASSWORD": "bench"}
    env["DETECTOR_API_TOKEN"] = TOKEN
    with tempfile.TemporaryDirectory(prefix="read-load-") as tmp_name:
        tmp = Path(tmp_name)
        sandbox_port = free_port()
        sandbox = f"http://127.0.0.1:{sandbox_port}"
        config = write_config(
            tmp, probes=args.probes, mix="realistic", components=40, interval=args.interval,
            sandbox=sandbox,
        )  # fmt: skip
        listen = re.search(r"^listen: (\S+)$", config.read_text(), re.MULTILINE).group(1)  # type: ignore[union-attr]
        with started(
            [*cli, "sandbox", "--port", str(sandbox_port)], tmp / "sandbox.log", env
        ) as sb:
            wait_http(f"{sandbox}/_sandbox/faults", sb)
            with started([*cli, "run", "--config", str(config)], tmp / "daemon.log", env) as d:
                wait_http(f"http://{listen}/healthz", d)
                base, stop = f"http://{listen}", threading.Event()
                if args.outage:
                    incident = start_outage(sandbox, base, args.warmup + 3 * args.seconds + 60)
                    updater = threading.Thread(
                        target=keep_updating, args=(base, incident, args.update_every, stop)
                    )
                time.sleep(args.warmup)
                start = time.time()
                if args.outage:
                    updater.start()
                loads = [run_wrk(base, path, args, d.pid) for path in PATHS]
                stop.set()
                end = time.time()
                time.sleep(args.interval)  # let the last runs finish and be flushed
                late = lateness(tmp / "bench.db", start, end, args.interval)
    print_report(args, loads, late)
    return 0


def print_report(args: argparse.Namespace, loads: list[Load], late: list[float]) -> None:
    print(
        f"wrk -t2 -c{args.connections} -d{args.seconds:g}s{' (gzip)' if args.gzip else ''};"
        f" daemon with {args.probes} probes every {args.interval:g}s"
        f"{f', during an outage (an update every {args.update_every:g}s)' if args.outage else ''}"
    )
    for load in loads:
        print(
            f"{load.path:24} {load.requests_per_second:9.0f} req/s  p50 {load.p50_ms:7.2f} ms"
            f"  p99 {load.p99_ms:7.2f} ms  max {load.max_ms:7.1f} ms  non-2xx {load.non_2xx}"
            f"  socket errors {load.errors}  daemon CPU {load.cpu_percent:.0f}%"
        )
    if late:
        print(
            f"probe lateness under load ({len(late)} runs): p50 {statistics.median(late):.3f}s"
            f"  p99 {quantile(late, 0.99):.3f}s  max {max(late):.3f}s"
        )
    else:
        print("probe lateness: no probe runs recorded during the load")


if __name__ == "__main__":
    sys.exit(main())
