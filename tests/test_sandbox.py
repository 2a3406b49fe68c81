"""The sandbox platform over real loopback HTTP; fault expiry runs on a manual clock."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient
from yarl import URL

from detector.clock import ManualClock
from detector.sandbox import INTEGRATIONS, SANDBOX, make_app
from detector.timeutil import format_time, parse_time

AUTH = {"Authorization": aiohttp.encode_basic_auth("probe", "secret")}
Client = TestClient[web.Request, web.Application]


@pytest.fixture
async def client(aiohttp_client: AiohttpClient, clock: ManualClock) -> Client:
    app = make_app(
        seed=7, clock=clock, latency=(0.0, 0.002), slow_seconds=0.3, import_delay=(1.0, 2.0)
    )
    return await aiohttp_client(app)


def parcel_body(**changes: Any) -> dict[str, Any]:
    parcel = {
        "name": "Jane Doe",
        "address": "Friedrichstraße",
        "house_number": "43",
        "city": "Berlin",
        "postal_code": "10117",
        "country": "DE",
        "weight": "1.000",
        "order_number": "o-1",
        "request_label": True,
        "shipment": {"id": 1001},
    }
    return {"parcel": {**parcel, **changes}}


def order(order_id: str = "o-1", integration: int = 1, country: str = "NL") -> dict[str, Any]:
    return {
        "order_id": order_id,
        "order_number": order_id,
        "integration": {"id": integration},
        "shipping_address": {"name": "Jane", "country_code": country},
    }


async def create_parcel(client: Client, **changes: Any) -> aiohttp.ClientResponse:
    return await client.post("/api/v2/parcels", json=parcel_body(**changes), headers=AUTH)


async def add_fault(client: Client, **fault: Any) -> None:
    resp = await client.post("/_sandbox/faults", json=fault)
    assert resp.status == 201, await resp.text()


# ------------------------------------------------------------------------------ platform


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": aiohttp.encode_basic_auth("probe", "")},
        {"Authorization": "Bearer "},
        {"Authorization": "Basic not-base64!"},
    ],
)
async def test_api_refuses_missing_or_empty_credentials(
    client: Client, headers: dict[str, str]
) -> None:
    resp = await client.get("/api/v2/user", headers=headers)
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"].startswith("Basic")
    assert (await resp.json())["error"]["code"] == 401


async def test_api_accepts_any_basic_or_bearer_credentials(client: Client) -> None:
    resp = await client.get("/api/v2/user", headers=AUTH)
    assert resp.status == 200
    assert (await resp.json())["user"]["username"] == "probe"
    resp = await client.get("/api/v2/user", headers={"Authorization": "Bearer abc"})
    assert resp.status == 200


async def test_shipping_methods_name_their_carrier(client: Client) -> None:
    resp = await client.get("/api/v2/shipping_methods", headers=AUTH)
    methods = {m["id"]: m["carrier"] for m in (await resp.json())["shipping_methods"]}
    assert methods[8] == "sendcloud"
    assert methods[1001] == "dhl"


async def test_parcel_with_label_round_trip(client: Client, clock: ManualClock) -> None:
    resp = await create_parcel(client)
    assert resp.status == 200
    parcel = (await resp.json())["parcel"]
    assert parcel["carrier"] == {"code": "dhl"}  # shipment 1001 is a DHL method
    assert parcel["country"] == {"iso_2": "DE"}
    assert parcel["status"]["message"] == "Ready to send"
    assert parcel["date_created"] == format_time(clock.now())

    label = await (await client.get(f"/api/v2/labels/{parcel['id']}", headers=AUTH)).json()
    pdf_url = URL(label["label"]["label_printer"])
    assert pdf_url.port == client.port
    pdf = await client.get(pdf_url.path, headers=AUTH)
    assert pdf.content_type == "application/pdf"
    assert (await pdf.read()).startswith(b"%PDF")

    cancel = await client.post(f"/api/v2/parcels/{parcel['id']}/cancel", headers=AUTH)
    assert (await cancel.json())["status"] == "cancelled"
    assert (await client.get(f"/api/v2/labels/{parcel['id']}", headers=AUTH)).status == 404
    parcels = (await (await client.get("/_sandbox/parcels")).json())["parcels"]
    assert [(p["id"], p["cancelled_at"]) for p in parcels] == [(parcel["id"], clock.now())]


async def test_carrier_field_takes_any_slug(client: Client) -> None:
    resp = await create_parcel(client, carrier="tiny_local_courier", request_label=False)
    parcel = (await resp.json())["parcel"]
    assert parcel["carrier"] == {"code": "tiny_local_courier"}
    assert parcel["label"] == {}
    assert (await client.get(f"/api/v2/labels/{parcel['id']}", headers=AUTH)).status == 404


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"shipment": {"id": 999}}, "parcel.shipment.id: no shipping method 999"),
        ({"country": "Germany"}, "parcel.country: String should match pattern"),
        ({"city": ""}, "parcel.city: String should have at least 1 character"),
        ({"carrier": "DHL Express"}, "parcel.carrier: String should match pattern"),
    ],
)
async def test_bad_parcel_is_400_naming_the_field(
    client: Client, changes: dict[str, Any], message: str
) -> None:
    resp = await create_parcel(client, **changes)
    assert resp.status == 400
    assert (await resp.json())["error"]["message"].startswith(message)


async def test_parcel_body_must_hold_a_parcel(client: Client) -> None:
    resp = await client.post("/api/v2/parcels", json=[1], headers=AUTH)
    assert resp.status == 400
    resp = await client.post("/api/v2/parcels", data=b"{", headers=AUTH)
    assert (await resp.json())["error"]["message"] == "body is not valid JSON"


async def test_unknown_parcel_is_404(client: Client) -> None:
    assert (await client.post("/api/v2/parcels/12345/cancel", headers=AUTH)).status == 404


# -------------------------------------------------------------------------------- orders


async def test_order_is_imported_after_a_delay(client: Client, clock: ManualClock) -> None:
    resp = await client.post("/api/v3/orders", json=[order()], headers=AUTH)
    assert resp.status == 200
    created = (await resp.json())["data"][0]
    assert created["imported_at"] is None
    url = f"/api/v3/orders/{created['id']}"
    assert (await (await client.get(url, headers=AUTH)).json())["data"]["imported_at"] is None

    clock.advance(2.0)  # import_delay is 1..2s in this fixture
    data = (await (await client.get(url, headers=AUTH)).json())["data"]
    assert data["status"] == {"code": "imported"}
    assert clock.now() - 2.0 < parse_time(data["imported_at"]) <= clock.now()


async def test_orders_upsert_on_order_id_and_integration(client: Client) -> None:
    batch = [order("a"), order("a", integration=2), order("b")]
    first = (await (await client.post("/api/v3/orders", json=batch, headers=AUTH)).json())["data"]
    again = [order("a"), order("c")]
    second = (await (await client.post("/api/v3/orders", json=again, headers=AUTH)).json())["data"]
    assert len({o["id"] for o in first}) == 3
    assert second[0]["id"] == first[0]["id"]
    assert second[1]["id"] not in {o["id"] for o in first}


@pytest.mark.parametrize(
    ("batch", "pointer", "detail"),
    [
        ([], "/", "List should have at least 1 item"),
        ([order(f"o-{n}") for n in range(101)], "/", "List should have at most 100 items"),
        ([order(), {"integration": {"id": 1}}], "/1/order_id", "Field required"),
        ([order(), order("x", integration=99)], "/1/integration/id", "unknown integration 99"),
        ({"order_id": "x"}, "/", "Input should be a valid list"),
    ],
)
async def test_bad_order_batch_is_400_and_stores_nothing(
    client: Client, batch: Any, pointer: str, detail: str
) -> None:
    resp = await client.post("/api/v3/orders", json=batch, headers=AUTH)
    assert resp.status == 400
    error = (await resp.json())["errors"][0]
    assert error["source"]["pointer"] == pointer
    assert error["detail"].startswith(detail)
    assert client.app[SANDBOX].orders == {}


async def test_deleted_order_is_gone(client: Client) -> None:
    created = await (await client.post("/api/v3/orders", json=[order()], headers=AUTH)).json()
    url = f"/api/v3/orders/{created['data'][0]['id']}"
    assert (await client.delete(url, headers=AUTH)).status == 204
    assert (await client.get(url, headers=AUTH)).status == 404


async def test_integrations_report_freshness(client: Client, clock: ManualClock) -> None:
    resp = await client.get("/api/v3/integrations", headers=AUTH)
    shops = {i["system"]: i for i in (await resp.json())["data"]}
    assert set(shops) == set(INTEGRATIONS.values())
    shopify = shops["shopify"]
    assert shopify["started_failing_at"] is None
    assert 0 <= clock.now() - parse_time(shopify["last_fetched_at"]) < 60

    await add_fault(client, component="integrations/shopify", mode="error", seconds=600)
    failed_at = clock.now()
    clock.advance(300)
    resp = await client.get("/api/v3/integrations", headers=AUTH)
    shopify = next(i for i in (await resp.json())["data"] if i["system"] == "shopify")
    assert shopify["started_failing_at"] == format_time(failed_at)
    assert parse_time(shopify["last_fetched_at"]) <= failed_at


# ------------------------------------------------------------------- panel and tracking


async def test_panel_is_html(client: Client) -> None:
    resp = await client.get("/panel/")
    assert resp.status == 200
    assert resp.content_type == "text/html"
    assert "Sendcloud" in await resp.text()


async def test_tracking_feed_is_fresh_when_healthy(client: Client, clock: ManualClock) -> None:
    feed = await (await client.get("/tracking/dhl", params={"country": "de"})).json()
    assert feed["carrier"] == "dhl"
    assert feed["country"] == "DE"
    assert 0 < clock.now() - parse_time(feed["last_update_at"]) <= 30
    assert len(feed["updates"]) == 10
    assert "Announcement failed" not in {u["status"] for u in feed["updates"]}


async def test_carrier_fault_freezes_its_tracking_feed(client: Client, clock: ManualClock) -> None:
    await add_fault(client, component="carriers/dhl", mode="error", seconds=3600)
    failed_at = clock.now()
    clock.advance(1200)
    feed = await (await client.get("/tracking/dhl")).json()
    assert feed["last_update_at"] == format_time(failed_at)
    assert [u["status"] for u in feed["updates"]].count("Announcement failed") == 3
    other = await (await client.get("/tracking/postnl")).json()
    assert clock.now() - parse_time(other["last_update_at"]) <= 30


# -------------------------------------------------------------------------------- faults


async def test_error_fault_hits_only_its_carrier(client: Client) -> None:
    await add_fault(client, component="carriers/dhl", mode="error", seconds=600)
    resp = await create_parcel(client)
    assert resp.status == 503
    assert (await resp.json())["error"]["message"] == "carriers/dhl is unavailable (sandbox fault)"
    assert (await create_parcel(client, carrier="postnl")).status == 200
    assert client.app[SANDBOX].parcels.keys() == {1}  # the failed create stored nothing


async def test_market_fault_hits_only_that_market(client: Client) -> None:
    await add_fault(client, component="carriers/dhl", mode="error", seconds=600, market="de")
    assert (await create_parcel(client, country="DE")).status == 503
    assert (await create_parcel(client, country="NL")).status == 200
    listed = (await (await client.get("/_sandbox/faults")).json())["faults"]
    assert [f["market"] for f in listed] == ["DE"]


async def test_integration_fault_fails_the_whole_batch(client: Client) -> None:
    await add_fault(
        client, component="integrations/woocommerce", mode="error", seconds=60, market="FR"
    )
    batch = [order("a"), order("b", integration=2, country="FR")]
    assert (await client.post("/api/v3/orders", json=batch, headers=AUTH)).status == 503
    assert client.app[SANDBOX].orders == {}
    assert (await client.post("/api/v3/orders", json=batch[:1], headers=AUTH)).status == 200


async def test_feature_faults(client: Client) -> None:
    await add_fault(client, component="sendcloud/api", mode="error", seconds=60)
    await add_fault(client, component="sendcloud/tracking", mode="error", seconds=60)
    assert (await client.get("/api/v2/user", headers=AUTH)).status == 503
    assert (await create_parcel(client)).status == 503  # the API in front of every carrier
    assert (await client.get("/tracking/dhl")).status == 503
    assert (await client.get("/panel/")).status == 200


async def test_fault_expires_on_the_clock(client: Client, clock: ManualClock) -> None:
    await add_fault(client, component="sendcloud/panel", mode="error", seconds=600)
    clock.advance(599)
    assert (await client.get("/panel/")).status == 503
    clock.advance(1)
    assert (await client.get("/panel/")).status == 200
    assert (await (await client.get("/_sandbox/faults")).json()) == {"faults": []}


async def test_fault_is_listed_and_cleared(client: Client, clock: ManualClock) -> None:
    await add_fault(client, component="carriers/dhl", mode="slow", seconds=60)
    await add_fault(client, component="carriers/ups", mode="error", seconds=60)
    listed = (await (await client.get("/_sandbox/faults")).json())["faults"]
    assert listed[0] == {
        "component": "carriers/dhl",
        "mode": "slow",
        "market": None,
        "started_at": format_time(clock.now()),
        "until": format_time(clock.now() + 60),
    }
    resp = await client.delete("/_sandbox/faults", params={"component": "carriers/ups"})
    assert await resp.json() == {"cleared": 1}
    assert await (await client.delete("/_sandbox/faults")).json() == {"cleared": 1}
    assert (await create_parcel(client, carrier="ups")).status == 200


async def test_slow_fault_adds_latency(client: Client) -> None:
    await add_fault(client, component="sendcloud/panel", mode="slow", seconds=60)
    started = time.perf_counter()
    assert (await client.get("/panel/")).status == 200
    assert time.perf_counter() - started >= 0.3  # slow_seconds of this fixture


async def test_timeout_fault_never_answers(client: Client) -> None:
    await add_fault(client, component="sendcloud/panel", mode="timeout", seconds=600)
    with pytest.raises(TimeoutError):
        await client.get("/panel/", timeout=aiohttp.ClientTimeout(total=0.2))


async def test_hung_request_answers_once_the_fault_is_cleared(client: Client) -> None:
    await add_fault(client, component="sendcloud/panel", mode="timeout", seconds=600)
    request = asyncio.ensure_future(client.get("/panel/"))
    await asyncio.sleep(0.1)
    assert not request.done()
    await client.delete("/_sandbox/faults")
    resp = await asyncio.wait_for(request, 1.0)
    assert resp.status == 200


async def test_hung_request_answers_once_the_fault_expires(
    client: Client, clock: ManualClock
) -> None:
    await add_fault(client, component="sendcloud/panel", mode="timeout", seconds=600)
    request = asyncio.ensure_future(client.get("/panel/"))
    await asyncio.sleep(0.1)
    clock.advance(600)
    resp = await asyncio.wait_for(request, 2.0)  # the hang re-checks the clock every second
    assert resp.status == 200


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"{", "body: Invalid JSON"),
        (b"", "body: Input should be an object"),
        (b"[]", "body: Input should be an object"),
        (b'{"mode": "error", "seconds": 60}', "component: Field required"),
        (b'{"component": "carriers/dhl", "seconds": 60}', "mode: Field required"),
        (b'{"component": "carriers/dhl", "mode": "down", "seconds": 60}', "mode: Input should be"),
        (b'{"component": "carriers/dhl", "mode": "error"}', "seconds: Field required"),
        (b'{"component": "carriers/dhl", "mode": "error", "seconds": 0}', "seconds: Input should"),
        (b'{"component": "carriers/dhl", "mode": "error", "seconds": "60"}', "seconds: Input"),
        (b'{"component": "dhl", "mode": "error", "seconds": 60}', "component: expected carriers/"),
        (b'{"component": "sendcloud/x", "mode": "error", "seconds": 1}', "component: unknown send"),
        (
            b'{"component": "carriers/dhl", "mode": "error", "seconds": 60, "market": "DEU"}',
            "market: expected a 2-letter country code",
        ),
        (
            b'{"component": "carriers/dhl", "mode": "error", "seconds": 60, "region": "EU"}',
            "region: Extra inputs are not permitted",
        ),
    ],
)
async def test_bad_fault_body_is_400_naming_the_field(
    client: Client, body: bytes, error: str
) -> None:
    resp = await client.post("/_sandbox/faults", data=body)
    assert resp.status == 400
    assert (await resp.json())["error"].startswith(error)
    assert client.app[SANDBOX].faults == {}
