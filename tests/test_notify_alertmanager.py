"""The alertmanager channel against a real Alertmanager (Debian's) on loopback: the alert
arrives with its labels, stays firing while re-sent, and resolves with `endsAt`."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from daemonkit import free_port
from debian import require_binary
from notifykit import T0, channel, incident, make_dispatcher, opened, resolved, settle

from detector.clock import ManualClock
from detector.store import SqlStore, open_store

CONFIG = """
route:
  receiver: blackhole
receivers:
  - name: blackhole
"""


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[str]:
    binary = require_binary("prometheus-alertmanager", "prometheus-alertmanager")
    (tmp_path / "am.yml").write_text(CONFIG)
    port = free_port()
    process = subprocess.Popen(
        [binary, f"--config.file={tmp_path / 'am.yml'}", f"--storage.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlStore]:
    s = open_store(f"sqlite:///{tmp_path}/detector.db")
    yield s
    s.close()


async def _ready(session: aiohttp.ClientSession, base: str) -> None:
    for _ in range(200):  # start-up takes well under a second here
        try:
            async with session.get(base + "/-/ready") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.05)
    raise AssertionError("Alertmanager did not become ready")


async def _alerts(session: aiohttp.ClientSession, base: str) -> list[dict[str, Any]]:
    async with session.get(base + "/api/v2/alerts") as response:
        assert response.status == 200
        alerts: list[dict[str, Any]] = await response.json()
        return alerts


async def test_alertmanager_receives_fires_and_resolves_the_incident(
    alertmanager: str, store: SqlStore, session: aiohttp.ClientSession
) -> None:
    await _ready(session, alertmanager)
    am = channel(
        name="am", type="alertmanager", url=alertmanager, link="https://status.example.com"
    )
    inc = incident()
    store.commit_engine([opened(inc)], {}, {}, T0)
    dispatcher = make_dispatcher(store, [am], session, ManualClock(T0))
    await settle(dispatcher)
    (alert,) = await _alerts(session, alertmanager)
    assert alert["labels"] == {
        "alertname": "DetectorIncident", "incident": "inc-1", "rule": "carrier-label-creation",
        "component": "carriers/dhl", "group": "carriers", "cause": "sustained",
    }  # fmt: skip
    assert alert["status"]["state"] == "active"
    assert alert["annotations"]["summary"] == "DHL: label creation failing in Germany"
    assert alert["annotations"]["evidence"] == "error_ratio (1) >= 0.9"
    assert alert["generatorURL"] == "https://status.example.com"
    assert alert["startsAt"].startswith("2026-11-28T09:30:00")  # when the failure began

    store.commit_engine([resolved(inc, T0 + 120)], {}, {}, T0 + 120)
    await settle(dispatcher)
    assert await _alerts(session, alertmanager) == []  # endsAt passed: resolved, not listed
    assert store.list_deliveries(states=("delivered",), limit=10)[-1].event == "incident.resolved"
