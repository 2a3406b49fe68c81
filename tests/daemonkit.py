"""A daemon wired to a real sandbox on loopback and a real SQLite file, on a manual clock;
faults in that sandbox; and the waits the real-process tests need."""

from __future__ import annotations

import io
import logging
import signal
import socket
import subprocess
import textwrap
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import structlog
from aiohttp.test_utils import TestServer
from structlog.typing import FilteringBoundLogger, Processor

from detector.clock import ManualClock
from detector.daemon import Daemon
from detector.logs import configure
from detector.settings import load_settings

T = TypeVar("T")

# The environment the configs below name (`username_env`, `api_token_env`, ...).
CREDENTIALS = {
    "TEST_SANDBOX_USER": "probe",
    "TEST_SANDBOX_PASS": "s3cret-pass",
    "TEST_DETECTOR_TOKEN": "t0ken",
}


def rules_yaml(window: str = "5m", open_after: str = "30m", resolve_after: str = "10m") -> str:
    """The platform rule and the carrier rule that inherits from it, with these timings."""
    return f"""
defaults:
  window: {window}
  open_after: {open_after}
  resolve_after: {resolve_after}
rules:
  - name: platform-api
    match: {{kind: http, component: sendcloud/api}}
    impact:
      - {{status: major_outage, when: error_ratio >= 0.9}}
      - {{status: partial_outage, when: error_ratio >= 0.3}}
  - name: carrier-label-creation
    description: label creation failing
    match: {{kind: label_creation, component: "carriers/*"}}
    impact:
      - {{status: major_outage, when: error_ratio >= 0.9}}
      - {{status: partial_outage, when: error_ratio >= 0.3}}
      - {{status: degraded_performance, when: latency_p95 > 5s}}
    inhibited_by: [platform-api]
    title: "{{component_name}}: label creation failing{{markets}}"
"""


RULES = rules_yaml()  # production timings


def sqlite_url(tmp_path: Path) -> str:
    """The SQLite file a test's daemon writes (and the test then reads)."""
    return f"sqlite:///{tmp_path / 'detector.db'}"


def write_config(
    tmp_path: Path,
    target: str,
    *,
    rules: str = RULES,
    timeout: str = "5s",
    extra_probes: str = "",
    store: str | None = None,
    listen: str = "127.0.0.1:0",
    evaluation_interval: str = "15s",
    extra: str = "",
) -> Path:
    """A daemon config for `target`; `extra` is more top-level YAML (e.g. `self_check:`)."""
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir(exist_ok=True)
    (rules_dir / "rules.yaml").write_text(rules)
    config = tmp_path / "detector.yaml"
    store_url = store or sqlite_url(tmp_path)
    config.write_text(
        textwrap.dedent(
            f"""
            listen: {listen}
            store: {store_url}
            rules: [rules/]
            evaluation_interval: {evaluation_interval}
            flush_interval: 1s
            shutdown_grace: 2s
            api_token_env: TEST_DETECTOR_TOKEN
            log_format: json
            {{extra}}
            probe_defaults:
              target: {target}
              interval: 60s
              timeout: {timeout}
              credentials: {{username_env: TEST_SANDBOX_USER, password_env: TEST_SANDBOX_PASS}}
            components:
              - {{id: sendcloud/api, name: Sendcloud API}}
              - {{id: carriers/dhl, name: DHL}}
              - {{id: carriers/ups, name: UPS}}
            probes:
              - {{id: api-user, kind: http, component: sendcloud/api}}
              - {{id: dhl-label-de, kind: label_creation, component: carriers/dhl,
                  labels: {{market: DE}}, settings: {{download_label: false}}}}
              - {{id: dhl-label-nl, kind: label_creation, component: carriers/dhl,
                  labels: {{market: NL}}, settings: {{download_label: false}}}}
              - {{id: ups-label-fr, kind: label_creation, component: carriers/ups,
                  labels: {{market: FR}}, settings: {{download_label: false}}}}
            """
        ).replace("{extra}", textwrap.dedent(extra).strip())
        + textwrap.indent(textwrap.dedent(extra_probes), "  ")
    )
    return config


def log_into(
    out: io.StringIO, *processors: Processor, level: int = logging.INFO
) -> FilteringBoundLogger:
    """A structlog logger rendering into `out`, for tests that read what was logged."""
    logger: FilteringBoundLogger = structlog.wrap_logger(
        structlog.PrintLogger(out),
        wrapper_class=structlog.make_filtering_bound_logger(level),
        processors=list(processors),
    )
    return logger


def json_log(out: io.StringIO) -> FilteringBoundLogger:
    """JSON lines with the level, as the daemon logs in production."""
    return log_into(out, structlog.processors.add_log_level, structlog.processors.JSONRenderer())


def make_daemon(
    tmp_path: Path,
    sandbox: TestServer,
    clock: ManualClock,
    out: io.StringIO | None = None,
    **config: Any,
) -> Daemon:
    """A daemon on `clock` probing `sandbox`; logs JSON into `out` (errors only when None)."""
    path = write_config(tmp_path, str(sandbox.make_url("")).rstrip("/"), **config)
    log = configure("json", "error") if out is None else json_log(out)
    return Daemon(load_settings(path), log=log, clock=clock)


async def crash(daemon: Daemon) -> None:
    """`kill -9` as the next daemon and the other instances see it: nothing more is written
    or renewed, and the kernel drops the dead process's flock on a SQLite store. The HTTP
    sessions are closed only so the test process leaks no sockets."""
    assert daemon.store is not None and daemon.sessions is not None
    daemon.store.close()
    await daemon.sessions.close()
    daemon.sessions = None  # dead: nothing shuts it down again (`chaoskit.pair`)
    if daemon._lock_file is not None:
        daemon._lock_file.close()


async def add_fault(
    sandbox: TestServer, component: str, mode: str = "error", seconds: float = 7200, **more: Any
) -> None:
    """Break `component` in the sandbox (`more`: market, ...) for `seconds` of its clock."""
    fault = {"component": component, "mode": mode, "seconds": seconds, **more}
    async with (
        aiohttp.ClientSession() as session,
        session.post(sandbox.make_url("/_sandbox/faults"), json=fault) as response,
    ):
        assert response.status == 201, await response.text()


async def clear_faults(sandbox: TestServer) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.delete(sandbox.make_url("/_sandbox/faults")) as response,
    ):
        assert response.status in (200, 204)


@asynccontextmanager
async def running(
    daemon: Daemon, *, schedule: bool = True, serve: bool = True
) -> AsyncIterator[Daemon]:
    """`daemon.startup(...)`, then `shutdown()` however the block ends."""
    await daemon.startup(schedule=schedule, serve=serve)
    try:
        yield daemon
    finally:
        await daemon.shutdown()


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM a daemon subprocess still running and wait for it (a test's `finally`)."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=20)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_connects(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_for(check: Callable[[], T | None], timeout: float, what: str) -> T:
    """Poll `check` on the wall clock (real-process tests only) until it returns a value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value is not None:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
