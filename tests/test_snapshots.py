"""The crowd-proof read path: `/` and `/api/v2/*.json` are rendered once per change (per
language for the page) and served from snapshots with ETag, Cache-Control and gzip."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from apikit import AUTH, MAJOR, NOW, PUBLIC_PATHS, Client, commit, open_incident
from daemonkit import make_daemon, running

from detector.clock import ManualClock
from detector.model import IncidentStatus, Maintenance
from detector.store.sql import SqlStore
from detector.web.app import SNAPSHOTS
from detector.web.snapshot import REFRESH_GRACE

SUMMARY = "/api/v2/summary.json"


def builds(client: Client) -> int:
    return client.app[SNAPSHOTS].builds


async def test_every_public_read_is_rendered_once_then_served(client: Client) -> None:
    for path in PUBLIC_PATHS:
        first = await client.get(path)
        before = builds(client)
        second = await client.get(path)
        assert first.status == second.status == 200, path
        assert await first.read() == await second.read(), path
        assert builds(client) == before, f"{path} rendered again without a change"
        assert second.headers["ETag"] == first.headers["ETag"]
        assert second.headers["Cache-Control"].startswith("public, max-age=")
        assert "Accept-Encoding" in second.headers["Vary"]
    cors = await client.get(SUMMARY)
    assert cors.headers["Access-Control-Allow-Origin"] == "*"


async def test_if_none_match_gets_304_and_gzip_when_accepted(client: Client) -> None:
    first = await client.get(SUMMARY)
    etag = first.headers["ETag"]
    again = await client.get(SUMMARY, headers={"If-None-Match": etag})
    assert again.status == 304 and await again.read() == b""
    other = await client.get(SUMMARY, headers={"If-None-Match": '"something-else"'})
    assert other.status == 200
    zipped = await client.get(SUMMARY, headers={"Accept-Encoding": "gzip"})
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert await zipped.json() == await first.json()  # the client inflated it
    plain = await client.get(SUMMARY, headers={"Accept-Encoding": "gzip;q=0, identity"})
    assert "Content-Encoding" not in plain.headers
    page = await client.get("/", headers={"Accept-Encoding": "br, gzip"})
    assert page.headers["Content-Encoding"] == "gzip"
    assert page.headers["Content-Security-Policy"].startswith("default-src 'none'")


async def test_an_accepted_write_renders_afresh_a_rejected_one_does_not(
    client: Client, clock: ManualClock
) -> None:
    before = await (await client.get(SUMMARY)).json()
    assert before["scheduled_maintenances"] == []
    rendered = builds(client)
    refused = await client.post("/api/v1/maintenances", json={"title": "x"}, headers=AUTH)
    assert refused.status == 400
    await client.get(SUMMARY)
    assert builds(client) == rendered
    window = {
        "start": "2026-11-28T11:00:00Z",
        "end": "2026-11-28T12:00:00Z",
        "components": ["carriers/dhl"],
        "title": "DHL upgrade",
    }
    added = await client.post("/api/v1/maintenances", json=window, headers=AUTH)
    assert added.status == 201
    after = await (await client.get(SUMMARY)).json()
    assert [m["name"] for m in after["scheduled_maintenances"]] == ["DHL upgrade"]


async def test_a_maintenance_boundary_renders_afresh(
    client: Client, store: SqlStore, clock: ManualClock
) -> None:
    store.add_maintenance(
        Maintenance(NOW + 2, NOW + 3600, ("carriers/dhl",), "DHL upgrade", id="m-1")
    )
    client.app[SNAPSHOTS].invalidate()
    upcoming = await (await client.get(SUMMARY)).json()
    assert upcoming["scheduled_maintenances"][0]["status"] == "scheduled"
    clock.advance(2.5)  # inside max-age, but the window has started
    started = await (await client.get(SUMMARY)).json()
    assert started["scheduled_maintenances"][0]["status"] == "in_progress"


async def test_snapshots_expire_after_max_age_and_on_invalidate(
    client: Client, store: SqlStore, clock: ManualClock
) -> None:
    snapshots = client.app[SNAPSHOTS]
    first = await client.get(SUMMARY)
    rendered = builds(client)
    clock.advance(snapshots.max_age + 0.1)  # aged: served as it is while it renders afresh
    aged = await client.get(SUMMARY)
    assert aged.headers["ETag"] == first.headers["ETag"]
    await snapshots.settled()
    assert builds(client) == rendered + 1
    clock.advance(3 * snapshots.max_age)  # too old to serve: the reader waits for a new one
    await client.get(SUMMARY)
    assert builds(client) == rendered + 2
    commit(store, open_incident())
    stale = await (await client.get(SUMMARY)).json()
    assert stale["incidents"] == []  # the daemon invalidates on commit; nothing did here
    client.app[SNAPSHOTS].invalidate()
    fresh = await (await client.get(SUMMARY)).json()
    assert [i["name"] for i in fresh["incidents"]] != []


async def test_one_snapshot_per_language(client: Client) -> None:
    english = await (await client.get("/?lang=en")).text()
    spanish = await (await client.get("/", headers={"Accept-Language": "es"})).text()
    assert english != spanish and 'lang="es"' in spanish
    rendered = builds(client)
    assert await (await client.get("/?lang=es")).text() == spanish
    assert await (await client.get("/")).text() == english
    assert builds(client) == rendered


async def test_a_crowd_waits_for_one_rendering(client: Client) -> None:
    client.app[SNAPSHOTS].invalidate()
    rendered = builds(client)
    responses = await asyncio.gather(*(client.get(SUMMARY) for _ in range(30)))
    assert {response.status for response in responses} == {200}
    assert builds(client) == rendered + 1


async def test_an_aged_snapshot_is_rendered_again_once_under_a_crowd(
    client: Client, clock: ManualClock
) -> None:
    snapshots = client.app[SNAPSHOTS]
    first = await client.get(SUMMARY)
    rendered = builds(client)
    clock.advance(snapshots.max_age + 0.1)
    responses = await asyncio.gather(*(client.get(SUMMARY) for _ in range(30)))
    assert {response.headers["ETag"] for response in responses} <= {first.headers["ETag"]} | {
        responses[-1].headers["ETag"]
    }
    await snapshots.settled()
    assert builds(client) == rendered + 1


async def test_a_refresh_serves_the_current_snapshot_while_one_renders(
    client: Client, store: SqlStore
) -> None:
    snapshots = client.app[SNAPSHOTS]
    await client.get(SUMMARY)
    commit(store, open_incident())
    snapshots.refresh()  # what the daemon does after the pipeline commits
    during = await (await client.get(SUMMARY)).json()
    assert during["incidents"] == []  # the crowd did not wait
    await snapshots.settled()
    after = await (await client.get(SUMMARY)).json()
    assert [i["id"] for i in after["incidents"]] == ["inc-1"]


async def test_after_a_quiet_spell_a_commit_is_never_served_stale(
    client: Client, store: SqlStore, clock: ManualClock
) -> None:
    """The first reader a minute after a commit reads the change, not the pre-commit copy."""
    snapshots = client.app[SNAPSHOTS]
    await client.get(SUMMARY)
    clock.advance(10)
    commit(store, open_incident())
    snapshots.refresh()
    clock.advance(REFRESH_GRACE + 50)  # nobody read in between
    first = await (await client.get(SUMMARY)).json()
    assert [i["id"] for i in first["incidents"]] == ["inc-1"]


async def test_a_refreshed_copy_is_served_only_within_the_grace(
    client: Client, store: SqlStore, clock: ManualClock
) -> None:
    snapshots = client.app[SNAPSHOTS]
    await client.get(SUMMARY)
    commit(store, open_incident())
    snapshots.refresh()
    clock.advance(REFRESH_GRACE - 0.5)
    assert (await (await client.get(SUMMARY)).json())["incidents"] == []  # served, rendering
    await snapshots.settled()
    assert [i["id"] for i in (await (await client.get(SUMMARY)).json())["incidents"]] == ["inc-1"]


@pytest.mark.usefixtures("credentials")
async def test_the_daemon_refreshes_snapshots_after_each_commit(
    tmp_path: Path, sandbox: TestServer, clock: ManualClock
) -> None:
    daemon = make_daemon(tmp_path, sandbox, clock)
    async with running(daemon, schedule=False), aiohttp.ClientSession() as session:
        url = f"http://127.0.0.1:{daemon.bound_port}{SUMMARY}"
        assert daemon.runner is not None
        snapshots = daemon.runner.app[SNAPSHOTS]
        async with session.get(url) as response:
            assert (await response.json())["incidents"] == []
        assert daemon.control is not None  # not through the API: only the commit tells
        await daemon.control.open_incident(
            "carriers/ups", IncidentStatus.INVESTIGATING, MAJOR, "UPS down", "UPS is down."
        )
        async with session.get(url) as response:
            await response.read()  # the crowd gets the current snapshot while one renders
        await snapshots.settled()
        async with session.get(url) as response:
            assert [i["name"] for i in (await response.json())["incidents"]] == ["UPS down"]
