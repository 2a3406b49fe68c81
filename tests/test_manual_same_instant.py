"""Two on-call notes in the same instant are both kept through the daemon (engine -> store):
the key that makes re-applied decisions no-ops must not drop the second (the store-direct path
is in test_store.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer
from daemonkit import make_daemon, running

from detector.clock import ManualClock
from detector.model import ComponentStatus, IncidentStatus


@pytest.mark.usefixtures("credentials")
async def test_two_notes_in_one_instant_both_reach_the_store(
    tmp_path: Path, sandbox: TestServer, clock: ManualClock
) -> None:
    daemon = make_daemon(tmp_path, sandbox, clock)
    async with running(daemon, schedule=False):
        control, pipeline = daemon.control, daemon.pipeline
        assert control is not None and pipeline is not None
        incident = await control.open_incident(
            "carriers/ups",
            IncidentStatus.INVESTIGATING,
            ComponentStatus.MAJOR_OUTAGE,
            "UPS down",
            "UPS is down.",
        )
        first = await control.update_incident(incident.id, IncidentStatus.MONITORING, "one")
        second = await control.update_incident(incident.id, IncidentStatus.MONITORING, "two")
        stored = pipeline.store.get_incident(incident.id)
    assert second.at == round(first.at + 0.001, 6)
    assert [(u.at, u.body) for u in stored.updates[-2:]] == [(first.at, "one"), (second.at, "two")]
