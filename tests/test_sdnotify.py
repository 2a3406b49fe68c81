"""sd_notify against a fake $NOTIFY_SOCKET (an AF_UNIX datagram socket the test binds):
READY with a STATUS once probing and serving, WATCHDOG pings from the event loop,
STOPPING on SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer
from daemonkit import write_config

from detector.clock import ManualClock
from detector.daemon import Daemon
from detector.logs import configure
from detector.sandbox import make_app
from detector.sdnotify import Notifier
from detector.settings import load_settings


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.setblocking(False)
    yield sock
    sock.close()


@pytest.fixture
async def sandbox() -> AsyncIterator[TestServer]:
    server = TestServer(make_app(seed=7, clock=ManualClock(), latency=(0.001, 0.002)))
    await server.start_server()
    yield server
    await server.close()


async def _next(sock: socket.socket, wanted: str) -> dict[str, str]:
    """The next message holding `wanted` (an event the daemon sends, not a duration)."""
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(10):
        while True:
            data = await loop.sock_recv(sock, 4096)
            fields = dict(line.split("=", 1) for line in data.decode().splitlines())
            if wanted in fields:
                return fields


def test_without_a_socket_nothing_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notifier = Notifier()
    assert not notifier.enabled
    assert notifier.ready("leader") is False
    assert notifier.watchdog_interval is None


def test_abstract_socket_names_and_watchdog_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    notifier = Notifier("@detector-test")
    assert notifier.address == "\0detector-test"
    assert notifier.watchdog_interval == 15.0
    monkeypatch.setenv("WATCHDOG_PID", "1")  # systemd watches another process: not us
    assert Notifier("@x").watchdog_interval is None
    assert Notifier(str(Path("/nonexistent/socket"))).status("x") is False  # never raises


async def test_daemon_says_ready_status_watchdog_and_stopping(
    tmp_path: Path,
    listener: socket.socket,
    sandbox: TestServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
    monkeypatch.setenv("WATCHDOG_USEC", "200000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    for name, value in (("USER", "probe"), ("PASS", "s3cret-pass")):
        monkeypatch.setenv(f"TEST_SANDBOX_{name}", value)
    config = write_config(tmp_path, str(sandbox.make_url("")).rstrip("/"))
    daemon = Daemon(load_settings(config), log=configure("json", "error"))
    await daemon.startup()
    try:
        ready = await _next(listener, "READY")
        assert ready["READY"] == "1"
        assert ready["STATUS"] == "leader; 4 probes; 0 open incidents"
        assert int(ready["MAINPID"]) > 0
        assert daemon.scheduling() and daemon.bound_port  # probing and serving
        assert (await _next(listener, "WATCHDOG"))["WATCHDOG"] == "1"
        assert (await _next(listener, "WATCHDOG"))["WATCHDOG"] == "1"  # keeps pinging
        await daemon.lead()
        assert (await _next(listener, "STATUS"))["STATUS"].startswith("leader; ")
        daemon._on_signal(signal.SIGTERM)
        assert (await _next(listener, "STOPPING"))["STOPPING"] == "1"
    finally:
        await daemon.shutdown()
