"""Hypothesis against the write API: arbitrary JSON values, shapes and strings at every POST
endpoint. Whatever arrives, the answer is never a 500, nothing logs a traceback, and a
rejected request changes nothing in the store."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from apikit import AUTH, TOKEN, StoreControl, commit, open_incident
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detector.clock import ManualClock
from detector.metrics import Metrics
from detector.store.sql import SqlStore
from detector.web.app import make_app

EXAMPLES_PER_ENDPOINT = 250

# Any JSON value: scalars (odd floats, huge ints, strings with controls and bidi) and nests.
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
    | st.sampled_from(["", " ", "\n", "\u202e", "\x00", "x" * 6000, "9999-12-31T23:59:59-14:00"])
)
JSON = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
# Values that look right, so examples also get past the first checks and into the later ones.
PLAUSIBLE: dict[str, st.SearchStrategy[Any]] = {
    "id": st.sampled_from(["d-1", "d-2", "-x", "a" * 129]) | st.text(max_size=10) | st.none(),
    "service": st.sampled_from(["label-api", "panel"]) | st.text(max_size=120),
    "version": st.sampled_from(["1", "2026.11.28-1"]) | st.text(max_size=120),
    "components": st.lists(st.sampled_from(["carriers/dhl", "carriers/ups"]), min_size=1)
    | st.lists(
        st.sampled_from(["carriers/dhl", "carriers/ups", "carriers/x", "DHL", ""]), max_size=4
    )
    | st.lists(st.text(max_size=12), max_size=3),
    "bad": st.booleans(),
    "at": st.sampled_from(["2026-11-28T09:58:00Z", "2026-11-28T11:00:00Z", "1969-01-01T00:00:00Z"])
    | st.text(max_size=30),
    "start": st.sampled_from(["2026-11-28T12:00:00Z", "2026-11-28T08:00:00+01:00"]),
    "end": st.sampled_from(["2026-11-28T13:00:00Z", "2027-06-01T00:00:00Z", "soon"]),
    "title": st.sampled_from(["DHL work", "a\u2066b"]) | st.text(max_size=250),
    "status": st.sampled_from(["identified", "monitoring", "resolved", "investigating"]),
    "body": st.sampled_from(["Found it.", "line\nline", "x" * 5001]) | st.text(max_size=60),
}
ENDPOINTS: dict[str, tuple[str, ...]] = {
    "/api/v1/deploys": ("id", "service", "version", "components", "bad", "at"),
    "/api/v1/deploys/{id}/bad": (),
    "/api/v1/incidents/{id}/updates": ("status", "body"),
    "/api/v1/maintenances": ("start", "end", "components", "title"),
    "/-/reload": (),
}


def bodies(fields: tuple[str, ...]) -> st.SearchStrategy[Any]:
    """Any JSON at all, or an object of the endpoint's fields (some plausible, some any JSON,
    maybe an unknown one)."""
    field_values = {name: PLAUSIBLE[name] | JSON for name in fields}
    shaped = st.fixed_dictionaries({}, optional={**field_values, "extra": JSON})
    if not fields:
        return JSON | shaped
    complete = st.fixed_dictionaries({name: PLAUSIBLE[name] for name in fields})
    one_off = st.tuples(complete, st.sampled_from(fields), JSON).map(
        lambda case: {**case[0], case[1]: case[2]}
    )
    return JSON | shaped | complete | one_off


def state(store: SqlStore) -> tuple[Any, ...]:
    incidents = store.list_incidents(limit=1000)
    return (
        store.list_maintenances(ending_after=0.0),
        store.recent_deploys(0.0),
        [(i.id, i.status, [(u.at, u.status, u.body) for u in i.updates]) for i in incidents],
    )


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
def test_write_api_survives_any_json(
    store: SqlStore,
    control: StoreControl,
    metrics: Metrics,
    clock: ManualClock,
    capsys: pytest.CaptureFixture[str],
    endpoint: str,
) -> None:
    commit(store, open_incident())
    app = make_app(store=store, control=control, metrics=metrics, clock=clock, token=TOKEN)
    loop = asyncio.new_event_loop()
    client = TestClient(TestServer(app), loop=loop)
    loop.run_until_complete(client.start_server())
    seen: dict[int, int] = {}

    async def post(path: str, raw: bytes) -> tuple[int, Any]:
        headers = {**AUTH, "Content-Type": "application/json"}
        response = await client.post(path, headers=headers, data=raw)
        return response.status, await response.read()

    @settings(max_examples=EXAMPLES_PER_ENDPOINT, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
    @given(body=bodies(ENDPOINTS[endpoint]), path_id=st.sampled_from(["inc-1", "d-1"]) | st.text())
    def one_request(body: Any, path_id: str) -> None:
        path = endpoint.replace("{id}", quote(path_id, safe="") or "x")
        clock.advance(1.0)  # two updates in one instant collide in the store (see report)
        before = state(store)
        status, raw = loop.run_until_complete(post(path, orjson.dumps(body)))
        seen[status] = seen.get(status, 0) + 1
        assert status < 500, (path, body, raw)
        if status >= 400:
            assert set(orjson.loads(raw)) == {"error"}, raw
            assert state(store) == before, (path, body, raw)

    try:
        one_request()
    finally:
        loop.run_until_complete(client.close())
        loop.close()
    output = "".join(capsys.readouterr())
    assert "Traceback" not in output and "internal_error" not in output
    total = sum(seen.values())
    with capsys.disabled():
        print(f"\n{endpoint}: {total} examples, answers {dict(sorted(seen.items()))}")
    assert total >= EXAMPLES_PER_ENDPOINT // 2
