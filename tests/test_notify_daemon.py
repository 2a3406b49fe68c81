"""Notifications inside the daemon (sandbox on loopback, manual clock, real SQLite): the
engine's episodes give on-call an early warning, the opened incident follows it, and a
hanging channel delays no probe and no evaluation."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer
from daemonkit import add_fault, make_daemon
from notifykit import Answer, Receiver, start_receiver, stop_receiver
from test_daemon import minutes

from detector.clock import ManualClock
from detector.store import SqlStore

pytestmark = pytest.mark.usefixtures("credentials")


@pytest.fixture
async def receivers() -> AsyncIterator[tuple[Receiver, Receiver]]:
    oncall, stuck = await start_receiver(), await start_receiver()
    yield oncall, stuck
    await stop_receiver(oncall)
    await stop_receiver(stuck)


def channels(oncall: Receiver, stuck: Receiver) -> str:
    return f"""
        notifications:
          - {{name: oncall, type: webhook, url: "{oncall.url}", secret_env: HOOK_SECRET,
              notify_after: 5m, match: {{group: carriers}}}}
          - {{name: stuck, type: webhook, url: "{stuck.url}", secret_env: HOOK_SECRET,
              timeout: 60s}}
    """


async def test_early_warning_then_the_incident_while_a_hanging_channel_delays_no_probe(
    tmp_path: Path,
    sandbox: TestServer,
    clock: ManualClock,
    receivers: tuple[Receiver, Receiver],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HOOK_SECRET", "hook-secret")
    oncall, stuck = receivers
    stuck.default = Answer(hang=True)
    daemon = make_daemon(tmp_path, sandbox, clock, extra=channels(oncall, stuck))
    await daemon.startup(schedule=False, serve=False)
    dispatcher = daemon.dispatcher
    assert dispatcher is not None
    try:
        await add_fault(sandbox, "carriers/dhl")
        await minutes(daemon, clock, 4)
        await dispatcher.step()
        assert oncall.requests == []  # failing for 4 minutes: not yet
        await minutes(daemon, clock, 2)
        await dispatcher.step()
        await dispatcher.drain(timeout=2)
        (warning,) = oncall.bodies()
        assert warning["event"] == "episode.started"
        assert warning["episode"]["rule"] == "carrier-label-creation"

        await minutes(daemon, clock, 26)  # open_after 30m
        await dispatcher.step()
        await dispatcher.drain(timeout=2)
        assert sorted(b["event"] for b in oncall.bodies()[1:]) == [
            "component.updated",
            "incident.opened",
        ]
        assert stuck.requests  # hangs on its first delivery, still in flight
        # The hanging channel holds up neither probes nor evaluation.
        await asyncio.wait_for(minutes(daemon, clock, 1), timeout=10)
        assert dispatcher.inflight
        dispatcher.stop_grace = 0.1
        await dispatcher.close()  # shutdown: the hanging attempt is cancelled, kept pending
        assert isinstance(daemon.store, SqlStore)
        assert [d.attempts for d in daemon.store.pending_deliveries("stuck")] == [0, 0]
    finally:
        stuck.released.set()
        await daemon.shutdown()
