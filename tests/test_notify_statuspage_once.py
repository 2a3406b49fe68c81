"""The hosted-Statuspage channel creates each incident once, even when the process dies between
Statuspage's answer to the create and saving the incident's id: the retry finds the incident
again by the detector id it carries in its metadata."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from notifykit import T0, channel, incident, make_dispatcher, opened, resolved, settle

from detector.clock import ManualClock
from detector.model import ComponentStatus
from detector.store import SqlStore
from detector.store.base import StoreError

PAGE = "kctbh9vrtdwd"


class FakeStatuspage:
    """The manage API v1 as far as the channel uses it: create, list unresolved, update."""

    def __init__(self) -> None:
        self.incidents: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, str]] = []
        self._ids = (f"sp{n:010d}" for n in itertools.count(1))

    def app(self) -> web.Application:
        app = web.Application()
        base = f"/v1/pages/{PAGE}"
        app.router.add_post(base + "/incidents", self.create)
        app.router.add_get(base + "/incidents/unresolved", self.unresolved)
        app.router.add_patch(base + "/incidents/{id}", self.update)
        return app

    async def create(self, request: web.Request) -> web.Response:
        self.calls.append(("POST", request.path))
        fields = (await request.json())["incident"]
        made = {"id": next(self._ids), **fields}
        self.incidents[made["id"]] = made
        return web.json_response(made, status=201)

    async def unresolved(self, request: web.Request) -> web.Response:
        self.calls.append(("GET", request.path))
        open_ones = [i for i in self.incidents.values() if i["status"] != "resolved"]
        return web.json_response(open_ones)

    async def update(self, request: web.Request) -> web.Response:
        self.calls.append(("PATCH", request.path))
        found = self.incidents.get(request.match_info["id"])
        if found is None:
            return web.json_response({"error": "not found"}, status=404)
        found.update((await request.json())["incident"])
        return web.json_response(found)


class DiesAfterCreate(SqlStore):
    """Saving the Statuspage id fails once, as when the process dies right after the create."""

    died = False

    def set_channel_ref(self, channel: str, key: str, ref: str) -> None:
        if not self.died:
            self.died = True
            raise StoreError("the process died here")
        super().set_channel_ref(channel, key, ref)


@pytest.fixture(autouse=True)
def secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SP_API_KEY", "sp-api-key")


@pytest.fixture
async def statuspage() -> AsyncIterator[tuple[FakeStatuspage, str]]:
    fake = FakeStatuspage()
    server = TestServer(fake.app(), host="127.0.0.1")
    await server.start_server()
    yield fake, str(server.make_url("/v1"))
    await server.close()


async def test_a_create_whose_id_was_lost_is_found_again_not_made_twice(
    store: SqlStore,
    statuspage: tuple[FakeStatuspage, str],
    session: aiohttp.ClientSession,
) -> None:
    fake, url = statuspage
    inc = incident()
    store.commit_engine([opened(inc)], {}, {"carriers/dhl": ComponentStatus.MAJOR_OUTAGE}, T0)
    page = channel(
        name="hosted", type="statuspage", url=url, page_id=PAGE, secret_env="SP_API_KEY", rate=100
    )
    dying = DiesAfterCreate(store.url)
    clock = ManualClock(T0)
    await settle(make_dispatcher(dying, [page], session, clock))
    assert dying.died and len(fake.incidents) == 1
    dying.close()

    restarted = make_dispatcher(store, [page], session, clock)
    clock.advance(60)  # past the retry's backoff
    await settle(restarted)
    store.commit_engine([resolved(inc, T0 + 120)], {}, {}, T0 + 120)
    clock.advance(60)
    await settle(restarted)

    assert [c[0] for c in fake.calls].count("POST") == 1
    (only,) = fake.incidents.values()
    assert only["metadata"] == {"detector": {"incident_id": inc.id}}
    assert only["status"] == "resolved"
    assert store.channel_ref("hosted", inc.id) == only["id"]
