"""The daemon as users run it: real processes, real scheduler, real time (seconds-long rules).

These are the only tests that wait on the wall clock; each is bounded and takes seconds.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from daemonkit import (
    CREDENTIALS,
    free_port,
    rules_yaml,
    running,
    sqlite_url,
    wait_for,
    write_config,
)

from detector.daemon import Daemon
from detector.logs import configure
from detector.settings import load_settings
from detector.store import SqlStore, open_store

FAST_RULES = rules_yaml(window="3s", open_after="6s", resolve_after="3s")


def env() -> dict[str, str]:
    return {**os.environ, **CREDENTIALS}


pytestmark = pytest.mark.usefixtures("credentials")


def post_fault(base: str, component: str, mode: str = "error") -> None:
    body = f'{{"component": "{component}", "mode": "{mode}", "seconds": 600}}'.encode()
    request = urllib.request.Request(f"{base}/_sandbox/faults", data=body, method="POST")
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status in (200, 201)


def start_daemon(config: Path, log: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "detector.cli", "run", "--config", str(config)]
    with open(log, "ab") as out:
        return subprocess.Popen(command, stdout=out, stderr=out, env=env())


def failing_since(store: SqlStore) -> float | None:
    state = store.load_engine_state()
    for series in (state or {}).get("series", []):
        if series["rule"] == "carrier-label-creation" and series["failing_since"]:
            return float(series["failing_since"])
    return None


def test_kill_9_halfway_through_open_after_keeps_the_original_clock(
    tmp_path: Path, sandbox_url: str
) -> None:
    config = write_config(
        tmp_path,
        sandbox_url,
        rules=FAST_RULES,
        timeout="800ms",
        listen=f"127.0.0.1:{free_port()}",
        evaluation_interval="500ms",
    )
    text = config.read_text().replace("interval: 60s", "interval: 1s")
    config.write_text(text.replace("flush_interval: 1s", "flush_interval: 500ms"))
    log = tmp_path / "daemon.log"
    post_fault(sandbox_url, "carriers/dhl")
    daemon = start_daemon(config, log)
    store = open_store(sqlite_url(tmp_path))
    try:
        since = wait_for(lambda: failing_since(store), 30, "the failure to be recorded")
        wait_for(lambda: time.time() >= since + 3 or None, 10, "half of open_after")
        assert store.list_incidents() == []
        daemon.send_signal(signal.SIGKILL)
        daemon.wait(timeout=10)

        daemon = start_daemon(config, log)
        incident = wait_for(lambda: next(iter(store.list_incidents()), None), 30, "the incident")
        assert failing_since(store) == since  # the episode survived the kill
        assert since + 6 <= incident.opened_at < since + 9, log.read_text()[-2000:]

        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=20) == 0
        daemon = start_daemon(config, log)  # a clean restart with the incident open
        time.sleep(2)  # let it probe and evaluate a few times
        assert len(store.list_incidents()) == 1
    finally:
        if daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=20)
        store.close()
    assert "Traceback" not in log.read_text()


class HungServer:
    """Accepts, reads, never answers: the worst kind of target."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self._hang, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def __aexit__(self, *_: object) -> None:
        self.release.set()
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    async def _hang(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)
        await self.release.wait()
        writer.close()


async def test_hung_and_slow_targets_delay_no_other_probe(tmp_path: Path, sandbox_url: str) -> None:
    post_fault(sandbox_url, "carriers/dhl", mode="slow")  # seconds per answer
    async with HungServer() as hung_url:
        daemon = await _run_with_hung_probe(tmp_path, sandbox_url, hung_url)
    runs = daemon.metrics.get
    fast = runs(
        "detector_probe_runs_total",
        {
            "probe": "ups-label-fr",
            "kind": "label_creation",
            "component": "carriers/ups",
            "result": "ok",
        },
    )
    stuck = runs(
        "detector_probe_runs_total",
        {"probe": "hung-api", "kind": "http", "component": "sendcloud/api", "result": "error"},
    )
    slow = runs(
        "detector_probe_runs_total",
        {
            "probe": "dhl-label-de",
            "kind": "label_creation",
            "component": "carriers/dhl",
            "result": "error",
        },
    )
    # All keep a 1 s schedule: the fast one is not held up by the others' timeouts.
    assert fast is not None and fast >= 3
    assert stuck is not None and stuck >= 3
    assert slow is not None and slow >= 3


async def _run_with_hung_probe(tmp_path: Path, sandbox_url: str, hung_url: str) -> Daemon:
    extra = f"""
    - {{id: hung-api, kind: http, component: sendcloud/api, interval: 1s, timeout: 900ms,
        target: "{hung_url}"}}
    """
    config = write_config(
        tmp_path, sandbox_url, rules=FAST_RULES, extra_probes=extra, timeout="800ms"
    )
    config.write_text(config.read_text().replace("interval: 60s", "interval: 1s"))
    settings = load_settings(config)
    daemon = Daemon(settings, log=configure("json", "error"))
    async with running(daemon, schedule=True, serve=False):
        await asyncio.sleep(4.5)
    return daemon


async def test_shutdown_cancels_probes_after_the_grace_period(tmp_path: Path) -> None:
    async with HungServer() as target:
        config = write_config(tmp_path, target, rules=FAST_RULES, timeout="50s")
        daemon = Daemon(load_settings(config), log=configure("json", "error"))
        await daemon.startup(schedule=False, serve=False)
        probe = asyncio.ensure_future(daemon.probe_all())
        await asyncio.sleep(0.2)  # the probes are in flight, stuck on the hung target
        started = time.monotonic()
        await daemon.shutdown()  # grace is 2 s in the test config
        elapsed = time.monotonic() - started
        with pytest.raises(asyncio.CancelledError):
            await probe
    assert 1.5 < elapsed < 6
