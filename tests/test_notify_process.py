"""Notifications from the daemon as users run it: kill -9 with deliveries pending, restart,
and a receiver that deduplicates by delivery id sees each change once."""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from daemonkit import free_port, stop_process, wait_for, write_config
from test_process import FAST_RULES, post_fault, start_daemon  # one copy of the process helpers

from detector.store import open_store

pytestmark = pytest.mark.usefixtures("credentials")


class Receiver(ThreadingHTTPServer):
    """Answers `status` (503 until told otherwise); keeps bodies by delivery id."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.status = 503
        self.deliveries: dict[str, dict[str, Any]] = {}
        self.posts = 0
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.server.lock:
            self.server.posts += 1
            status = self.server.status
            if status == 200:
                self.server.deliveries.setdefault(body["delivery"], body)
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_kill_9_with_deliveries_pending_delivers_each_change_once_after_restart(
    tmp_path: Path, sandbox_url: str, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPS_HOOK_SECRET", "hook-secret")
    notifications = f"""
        notifications:
          - {{name: ops-hook, type: webhook, url: "{receiver.url}", secret_env: OPS_HOOK_SECRET}}
    """
    config = write_config(
        tmp_path, sandbox_url, rules=FAST_RULES, timeout="800ms", extra=notifications,
        listen=f"127.0.0.1:{free_port()}", evaluation_interval="500ms",
    )  # fmt: skip
    config.write_text(config.read_text().replace("interval: 60s", "interval: 1s"))
    log = tmp_path / "daemon.log"
    post_fault(sandbox_url, "carriers/dhl")
    daemon = start_daemon(config, log)
    store = open_store(f"sqlite:///{tmp_path / 'detector.db'}")
    try:

        def tried_and_pending() -> bool | None:
            pending = store.list_deliveries(states=("pending",))
            opened = [d for d in pending if d.event == "incident.opened" and d.attempts >= 1]
            return True if opened else None

        wait_for(tried_and_pending, 40, "the incident's delivery to fail once")
        daemon.send_signal(signal.SIGKILL)
        daemon.wait(timeout=10)
        pending = {d.id: d.event for d in store.list_deliveries(states=("pending",))}
        receiver.status = 200
        daemon = start_daemon(config, log)
        wait_for(
            lambda: not store.list_deliveries(states=("pending", "dead")) or None,
            40,
            "every delivery",
        )
        delivered = store.list_deliveries(states=("delivered",), limit=1000)
        assert {d.id for d in delivered} == set(receiver.deliveries)  # each change once
        assert set(pending) <= set(receiver.deliveries)
        changes = [
            (b["event"], json.dumps(b["incident"] or b.get("component"), sort_keys=True))
            for b in receiver.deliveries.values()
        ]
        assert len(changes) == len(set(changes))  # no change under two delivery ids
        opened = [b for b in receiver.deliveries.values() if b["event"] == "incident.opened"]
        assert [b["incident"]["id"] for b in opened] == [store.list_incidents()[0].id]
        assert receiver.posts > len(receiver.deliveries)  # the 503s were retried
    finally:
        stop_process(daemon)
        store.close()
    assert "Traceback" not in log.read_text()
