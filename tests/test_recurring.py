"""Recurring maintenance windows in the config (cron, UTC): strictly validated, turned into
occurrences a week ahead with deterministic ids, shown as upcoming in the v2 JSON and on the
page, honoured by the engine, and following the config on reload."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from daemonkit import CREDENTIALS, make_daemon, running, write_config
from factories import T0

from detector.clock import ManualClock
from detector.daemon import Daemon
from detector.recurring import RecurringMaintenance, occurrences
from detector.settings import ConfigError, load_settings
from detector.timeutil import parse_time

WEEKLY = RecurringMaintenance.model_validate(
    {"id": "dhl-weekly", "cron": "0 2 * * SUN", "duration": "2h",
     "components": ["carriers/dhl"], "title": "DHL weekly maintenance"}
)  # fmt: skip
WINDOW_YAML = """
recurring_maintenance:
  - {id: dhl-weekly, cron: "0 2 * * SUN", duration: 2h, components: [carriers/dhl],
     title: DHL weekly maintenance}
"""


def test_occurrences_a_week_ahead_with_deterministic_ids() -> None:
    # T0 is Saturday 2026-11-28 10:00Z: the next Sunday 02:00 is tomorrow
    [sunday] = occurrences([WEEKLY], T0)
    assert sunday.id == "r-dhl-weekly-20261129T0200Z"
    assert (sunday.start, sunday.end) == (parse_time("2026-11-29T02:00:00Z"), sunday.start + 7200)
    assert sunday.components == ("carriers/dhl",) and sunday.title == "DHL weekly maintenance"
    during = parse_time("2026-11-29T03:00:00Z")  # the running one is still listed
    assert [m.id for m in occurrences([WEEKLY], during)] == [
        "r-dhl-weekly-20261129T0200Z",
        "r-dhl-weekly-20261206T0200Z",
    ]
    assert occurrences([WEEKLY], T0) == occurrences([WEEKLY], T0)


@pytest.mark.parametrize(
    ("window", "error"),
    [
        ('cron: "0 2 * *"', "not a five-field cron expression"),
        ('cron: "0 0 2 * * SUN"', "not a five-field cron expression"),
        ('cron: "61 2 * * SUN"', "not a five-field cron expression"),
        ("duration: 2", "duration"),
        ("duration: 30s", "duration"),
        ("duration: 8d", "duration"),
        ('cron: "0 * * * *"', "the windows would overlap"),
        ("components: [carriers/nope]", "unknown component 'carriers/nope'"),
        ("components: []", "components"),
        ("id: Bad_Id", "recurring_maintenance[0].id"),
        ("title: ''", "title"),
        ("every: week", "every: unknown key"),
    ],
)
def test_bad_windows_are_one_line_naming_the_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, window: str, error: str
) -> None:
    monkeypatch.setattr(os, "environ", {**os.environ, **CREDENTIALS})
    fields = {"id": "dhl-weekly", "cron": '"0 2 * * SUN"', "duration": "2h",
              "components": "[carriers/dhl]", "title": "DHL"}  # fmt: skip
    key = window.split(":")[0]
    fields[key] = window.split(":", 1)[1].strip()
    text = ", ".join(f"{k}: {v}" for k, v in fields.items())
    path = write_config(
        tmp_path, "http://127.0.0.1:9", extra=f"recurring_maintenance: [{{{text}}}]"
    )
    with pytest.raises(ConfigError) as raised:
        load_settings(path)
    message = str(raised.value)
    assert "recurring_maintenance" in message or "recurring maintenance" in message, message
    assert error in message and "\n" not in message


def test_two_windows_with_one_id_are_refused(tmp_path: Path) -> None:
    twice = WINDOW_YAML + WINDOW_YAML.split("\n", 2)[2]
    path = write_config(tmp_path, "http://127.0.0.1:9", extra=twice)
    with pytest.raises(ConfigError, match="recurring_maintenance: duplicate id"):
        load_settings(path, resolve_secrets=False)


async def get(daemon: Daemon, path: str, method: str = "GET") -> tuple[int, Any]:
    url = f"http://127.0.0.1:{daemon.bound_port}{path}"
    headers = {"Authorization": f"Bearer {CREDENTIALS['TEST_DETECTOR_TOKEN']}"}
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url, headers=headers) as response,
    ):
        if response.content_type == "application/json":
            return response.status, await response.json()
        return response.status, await response.text()


@pytest.mark.usefixtures("credentials")
async def test_the_daemon_shows_honours_and_reloads_recurring_windows(
    tmp_path: Path, sandbox: TestServer, clock: ManualClock
) -> None:
    daemon = make_daemon(tmp_path, sandbox, clock, extra=WINDOW_YAML)
    async with running(daemon, schedule=False):
        _, upcoming = await get(daemon, "/api/v2/scheduled-maintenances/upcoming.json")
        [listed] = upcoming["scheduled_maintenances"]
        assert (listed["id"], listed["name"]) == (
            "r-dhl-weekly-20261129T0200Z",
            "DHL weekly maintenance",
        )
        assert listed["scheduled_for"] == "2026-11-29T02:00:00Z"
        _, page = await get(daemon, "/")
        assert "DHL weekly maintenance" in page
        refused, reply = await get(daemon, f"/api/v1/maintenances/{listed['id']}", "DELETE")
        assert refused == 409 and "recurring_maintenance" in reply["error"]

        clock.set(parse_time("2026-11-29T02:30:00Z"))  # inside the window: the engine knows it
        await daemon.evaluate()
        statuses = daemon.engine.component_statuses(clock.now(), ["carriers/dhl"])
        assert statuses["carriers/dhl"] == "under_maintenance"

        config = tmp_path / "detector.yaml"
        config.write_text(config.read_text().replace("0 2 * * SUN", "0 3 * * SAT"))
        assert (await daemon.reload())[0]
        ids = [m.id for m in daemon.store.list_maintenances(ending_after=clock.now())]  # type: ignore[union-attr]
        assert ids == ["r-dhl-weekly-20261129T0200Z", "r-dhl-weekly-20261205T0300Z"]
