"""Per-probe CPU of detector's whole path, next to a bare aiohttp GET loop.

    .venv/bin/python bench/probe_cost_bench.py                  # 5,000 requests a row
    .venv/bin/python bench/probe_cost_bench.py --requests 20000 --repeat 5

A trivial aiohttp server runs in its own process (its CPU is not counted); this process
measures `time.process_time()` (every thread, so the store's worker thread counts too) over
sequential requests, one at a time, for each row:

* `bare aiohttp GET`: `session.get(url)` + `read()` - DESIGN's anchors (75 µs keep-alive,
  290 µs with a new connection each time).
* `run_probe (http)`: `probes.base.run_probe` of an `http` probe on the session the daemon
  would pick (`ProbeSessions`: untraced while the probe is healthy; hard timeout,
  ProbeResult) - the probe layer alone.
* `blackbox_exporter`: Prometheus' blackbox_exporter (Debian `prometheus-blackbox-exporter`,
  installed with apt-get when missing) probing the same target with an `http_2xx` module; this
  process drives `/probe` and the row is the exporter's own CPU (`/proc/<pid>/stat`) per probe.
  It opens a new connection for every probe, so compare it with the new-connection rows.
* `detector path`: `Daemon.probe_once` (run_probe -> metrics -> engine.observe -> buffer)
  plus `evaluate()` and `flush()` (one batched SQLite write in a worker thread) at the rate a
  daemon with `--probes` probes at `--interval` would call them (production evaluation 15 s,
  flush 5 s), i.e. every probes*15/interval and probes*5/interval runs. The Daemon is built
  from a generated config and started with `startup(schedule=False, serve=False)`.

Each row runs in keep-alive mode (one pooled connection) and new-connection mode (a
`force_close=True` connector; for the daemon rows its `ProbeSessions` is swapped for one
over the same connector settings plus `force_close`). Rows are interleaved and
repeated; the table shows the best and the median repeat, µs CPU per request.

`--pace 0.06` sleeps after every request (the sleep's own small cost included), so the event
loop idles between requests as in a daemon running ~17 probes a second: on a VM with shared
cores the per-request CPU is then several times the tight loop's (cold caches, idle wake-ups),
and that is the regime `bench/daemon_bench.py` measures.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import web

ANCHORS = {"keep-alive": 75.0, "new connection": 290.0}  # an earlier machine's bare GET
TARGET_RATIO = 1.3  # DESIGN.md "Performance": the detector path <= 1.3x the same run's bare GET
EVALUATION_INTERVAL, FLUSH_INTERVAL = 15.0, 5.0  # the daemon's production defaults

RULES = """\
rules:
  - name: bench-http
    match: {kind: http, component: "sendcloud/*"}
    window: 5m
    min_results: 1
    impact:
      - {status: major_outage, when: error_ratio >= 0.9}
      - {status: partial_outage, when: error_ratio >= 0.3}
      - {status: degraded_performance, when: latency_p95 > 5s}
    open_after: 30m
    resolve_after: 10m
"""


# ----------------------------------------------------------------------------- server


def serve() -> None:
    """The trivial target: 200 `ok` on every path; prints its port, serves until killed."""

    async def ok(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/{tail:.*}", ok)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        sockets = getattr(site._server, "sockets", None) or []
        print(sockets[0].getsockname()[1], flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


def start_server() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve"], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    port = proc.stdout.readline().strip()
    if not port.isdigit():
        proc.kill()
        raise SystemExit("the target server did not start")
    return proc, f"http://127.0.0.1:{port}"


# ----------------------------------------------------------------------------- rows

Loop = Callable[[int], Awaitable[None]]


@dataclass
class Row:
    name: str
    mode: str
    loop: Loop
    cpu: Callable[[], float] = time.process_time  # whose CPU: this process by default
    samples: list[float] = field(default_factory=list)  # µs CPU per request
    wall: list[float] = field(default_factory=list)  # µs wall per request


async def measure(row: Row, requests: int) -> None:
    await row.loop(max(requests // 20, 50))  # warm: connections, caches, metric children
    wall0, cpu0 = time.perf_counter(), row.cpu()
    await row.loop(requests)
    cpu, wall = row.cpu() - cpu0, time.perf_counter() - wall0
    row.samples.append(1e6 * cpu / requests)
    row.wall.append(1e6 * wall / requests)


def bare_loop(session: aiohttp.ClientSession, url: str, pace: float) -> Loop:
    async def loop(count: int) -> None:
        for _ in range(count):
            async with session.get(url) as resp:
                await resp.read()
                if resp.status != 200:
                    raise SystemExit(f"bare GET: HTTP {resp.status}")
            if pace:
                await asyncio.sleep(pace)

    return loop


BLACKBOX_CONFIG = """\
modules:
  http_2xx:
    prober: http
    timeout: 10s
    http: {preferred_ip_protocol: ip4}
"""


def start_blackbox(tmp: Path) -> tuple[subprocess.Popen[bytes], str] | None:
    """blackbox_exporter on a free loopback port, installing the Debian package when missing;
    None (and a line on stderr) when it cannot run here."""
    binary = shutil.which("prometheus-blackbox-exporter")
    if binary is None:
        install = ["apt-get", "install", "-y", "-q", "prometheus-blackbox-exporter"]
        done = subprocess.run(install, capture_output=True, check=False)
        binary = shutil.which("prometheus-blackbox-exporter")
        if binary is None:
            print(f"blackbox_exporter unavailable (apt-get: rc {done.returncode})", file=sys.stderr)
            return None
    (tmp / "blackbox.yml").write_text(BLACKBOX_CONFIG)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [binary, f"--config.file={tmp / 'blackbox.yml'}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return proc, f"http://127.0.0.1:{port}"


def process_cpu(pid: int) -> Callable[[], float]:
    ticks = os.sysconf("SC_CLK_TCK")

    def cpu() -> float:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime

    return cpu


def blackbox_loop(session: aiohttp.ClientSession, exporter: str, target: str) -> Loop:
    url = f"{exporter}/probe"
    params = {"module": "http_2xx", "target": target}

    async def loop(count: int) -> None:
        for _ in range(count):
            async with session.get(url, params=params) as resp:
                body = await resp.text()
                if resp.status != 200 or "probe_success 1" not in body:
                    raise SystemExit(f"blackbox_exporter: HTTP {resp.status}, {body[:200]!r}")

    return loop


async def wait_up(session: aiohttp.ClientSession, url: str) -> None:
    for _ in range(100):
        try:
            async with session.get(url) as resp:
                if resp.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.05)
    raise SystemExit(f"{url} did not come up")


def write_config(directory: Path, target: str, probes: int) -> Path:
    (directory / "rules").mkdir()
    (directory / "rules" / "bench.yaml").write_text(RULES)
    components = [f"  - {{id: sendcloud/feature{n:02d}, name: Feature {n}}}" for n in range(10)]
    specs = [
        f"  - {{id: http-{n}, kind: http, component: sendcloud/feature{n % 10:02d},"
        f" settings: {{path: /ok/{n}}}}}"
        for n in range(probes)
    ]
    config = directory / "detector.yaml"
    config.write_text(
        "\n".join(
            [
                "listen: 127.0.0.1:0",
                f"store: sqlite:///{directory / 'bench.db'}",
                "rules: [rules/]",
                "log_format: json",
                "probe_defaults:",
                f"  target: {target}",
                "  interval: 60s",
                "  timeout: 10s",
                "components:",
                *components,
                "probes:",
                *specs,
                "",
            ]
        )
    )
    return config


async def run(args: argparse.Namespace, url: str, tmp: Path) -> list[Row]:
    from detector.daemon import Daemon
    from detector.logs import configure
    from detector.settings import load_settings
    from probes.base import run_probe
    from probes.tracing import ProbeSessions

    settings = load_settings(write_config(tmp, url, args.probes))
    log = configure("json", "info")
    specs = settings.probe_specs
    eval_every = max(1, round(args.probes * EVALUATION_INTERVAL / args.interval))
    flush_every = max(1, round(args.probes * FLUSH_INTERVAL / args.interval))

    async def daemon_for(force_close: bool) -> Daemon:
        # SQLite is single-instance: each daemon of this run gets its own file.
        store = f"sqlite:///{tmp / ('new' if force_close else 'keep')}.db"
        daemon = Daemon(settings.model_copy(update={"store": store}), log=log)
        await daemon.startup(schedule=False, serve=False)
        if force_close:  # same sessions as startup(), plus a new connection each time
            assert daemon.sessions is not None
            await daemon.sessions.close()
            connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, force_close=True)
            daemon.sessions = ProbeSessions(connector)
        return daemon

    def probe_loop(daemon: Daemon) -> Loop:
        sessions = daemon.sessions
        assert sessions is not None
        state = {"n": 0}

        async def loop(count: int) -> None:
            for _ in range(count):
                spec = specs[state["n"] % len(specs)]
                state["n"] += 1
                session = sessions.session_for(spec)  # as the daemon does: healthy, untraced
                result = await run_probe(spec, session=session, log=log, clock=daemon.clock)
                if not result.ok:
                    raise SystemExit(f"run_probe: {result.error}")
                if args.pace:
                    await asyncio.sleep(args.pace)

        return loop

    def path_loop(daemon: Daemon) -> Loop:
        state = {"n": 0}

        async def loop(count: int) -> None:
            for _ in range(count):
                spec = specs[state["n"] % len(specs)]
                state["n"] += 1
                result = await daemon.probe_once(spec)
                if not result.ok:
                    raise SystemExit(f"probe_once: {result.error}")
                if state["n"] % eval_every == 0:
                    await daemon.evaluate()
                if state["n"] % flush_every == 0:
                    await daemon.flush()
                if args.pace:
                    await asyncio.sleep(args.pace)

        return loop

    keep_session = aiohttp.ClientSession()
    close_session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))
    daemons = {mode: await daemon_for(mode == "new connection") for mode in ANCHORS}
    rows = [
        Row("bare aiohttp GET", "keep-alive", bare_loop(keep_session, url + "/ok", args.pace)),
        Row("run_probe (http)", "keep-alive", probe_loop(daemons["keep-alive"])),
        Row("detector path", "keep-alive", path_loop(daemons["keep-alive"])),
        Row("bare aiohttp GET", "new connection", bare_loop(close_session, url + "/ok", args.pace)),
        Row("run_probe (http)", "new connection", probe_loop(daemons["new connection"])),
        Row("detector path", "new connection", path_loop(daemons["new connection"])),
    ]
    blackbox = start_blackbox(tmp)
    if blackbox is not None:
        await wait_up(keep_session, blackbox[1] + "/-/healthy")
        loop = blackbox_loop(keep_session, blackbox[1], url + "/ok")
        rows.append(Row("blackbox_exporter", "new connection", loop, process_cpu(blackbox[0].pid)))
    try:
        for repeat in range(args.repeat):
            for row in rows:
                await measure(row, args.requests)
                print(
                    f"repeat {repeat + 1}/{args.repeat} {row.name:<18} {row.mode:<15}"
                    f" {row.samples[-1]:7.1f} µs CPU",
                    file=sys.stderr,
                )
    finally:
        if blackbox is not None:
            blackbox[0].terminate()
            blackbox[0].wait()
        await keep_session.close()
        await close_session.close()
        for daemon in daemons.values():
            await daemon.shutdown()
    return rows


def print_table(args: argparse.Namespace, rows: list[Row]) -> None:
    eval_every = max(1, round(args.probes * EVALUATION_INTERVAL / args.interval))
    flush_every = max(1, round(args.probes * FLUSH_INTERVAL / args.interval))
    print(
        f"# per-request CPU, {args.requests} sequential requests a row, best of {args.repeat}"
        f" (median in brackets); detector path: evaluate() every {eval_every} and flush()"
        f" every {flush_every} runs ({args.probes} probes at {args.interval:g}s)"
        + (f"; paced: {1000 * args.pace:g} ms sleep after each request" if args.pace else "")
    )
    header = (
        f"| {'row':<18} | {'connection':<14} | {'µs CPU/req':>18} | {'µs wall/req':>11} |"
        f" {'x bare':>6} | {'x anchor':>8} | {'target':>15} |"
    )
    print(header)
    print("|" + "|".join("-" * (len(cell)) for cell in header.split("|")[1:-1]) + "|")
    for row in rows:
        best, median = min(row.samples), statistics.median(row.samples)
        bare = min(
            next(r for r in rows if r.mode == row.mode and r.name.startswith("bare")).samples
        )
        target = ""
        if row.name == "detector path":
            met = "met" if best / bare <= TARGET_RATIO else "MISSED"
            target = f"<= {TARGET_RATIO:.1f}x {met}"
        elif row.name == "blackbox_exporter":
            ours = min(
                next(r for r in rows if r.name == "detector path" and r.mode == row.mode).samples
            )
            target = f"detector {ours / best:.2f}x"
        cpu = f"{best:.0f} ({median:.0f})"
        print(
            f"| {row.name:<18} | {row.mode:<14} | {cpu:>18} | {min(row.wall):>11.0f} |"
            f" {best / bare:>6.2f} | {best / ANCHORS[row.mode]:>8.2f} | {target:>15} |"
        )
    print(
        "x bare: against this run's bare GET (the target: detector path <= 1.3x); x anchor:"
        " against an earlier machine's 75 / 290 µs; blackbox_exporter: its own process's CPU"
        " per probe, the detector path's new-connection CPU as a share of it (target: < 1)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=5000, help="per row and repeat")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--probes", type=int, default=1000, help="distinct probes (and rate)")
    parser.add_argument("--interval", type=float, default=60.0, help="their interval (rate)")
    parser.add_argument(
        "--pace",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="sleep after each request, as a daemon's probes arrive spaced (default: none)",
    )
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve()
        return 0
    server, url = start_server()
    try:
        with tempfile.TemporaryDirectory(prefix="detector-probe-cost-") as tmp:
            rows = asyncio.run(run(args, url, Path(tmp)))
    finally:
        server.terminate()
        server.wait()
    print_table(args, rows)
    print(f"python {sys.version.split()[0]}, aiohttp {aiohttp.__version__}, {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
