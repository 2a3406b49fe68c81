"""A simulated Sendcloud-like platform, for the demo and the tests (`detector sandbox`).

Shapes follow the public Sendcloud API. Every /api/ path needs auth: HTTP Basic with any
non-empty username and password, or any Bearer token.

  GET  /api/v2/user                            the account (the `sendcloud/api` feature)
  GET  /api/v2/shipping_methods                ids usable as `parcel.shipment.id`
  POST /api/v2/parcels                         {"parcel": {...}}; a label if request_label
  GET  /api/v2/labels/{parcel_id}              label links; .../labels/label_printer/{id} the PDF
  POST /api/v2/parcels/{parcel_id}/cancel
  POST /api/v3/orders                          upsert a batch (1..100, all-or-nothing) of orders
  GET|DELETE /api/v3/orders/{id}               `imported_at` is set a short while after the push
  GET  /api/v3/integrations                    per shop `last_fetched_at`, `started_failing_at`
  GET  /panel/                                 the panel (HTML)
  GET  /tracking/{carrier}?country=DE          newest tracking updates and `last_update_at`
  POST|GET|DELETE /_sandbox/faults             inject, list, clear (`?component=`) faults
  GET  /_sandbox/parcels                       every parcel and whether it was cancelled

A parcel's carrier is `parcel.carrier` (any slug) when given, else the carrier of shipping
method `parcel.shipment.id`; its market is `parcel.country`. An order's shop is
`integration.id` (see /api/v3/integrations), its market `shipping_address.country_code`.

Faults hit `carriers/<slug>` on the parcel and label endpoints, `integrations/<slug>` on
POST /api/v3/orders, `sendcloud/api` on every /api/ path, `sendcloud/panel` on /panel/ and
`sendcloud/tracking` on /tracking/. A fault with a `market` hits only that market. A carrier
fault also freezes the carrier's tracking feed at the fault's start (`error` adds "Announcement
failed" updates); an integration fault (`error`, `timeout`) shows in `started_failing_at`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
import re
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Annotated, Any, Literal

from aiohttp import BasicAuth, web
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from detector.clock import Clock, SystemClock
from detector.timeutil import format_time

CARRIERS = ("dhl", "postnl", "dpd", "ups", "colissimo", "correos", "gls", "bpost", "hermes", "brt")
# Shipping method ids for `shipment.id`; 8 is Sendcloud's own unstamped letter.
SHIPPING_METHODS = {8: "sendcloud"} | {1001 + n: slug for n, slug in enumerate(CARRIERS)}
_METHODS = SHIPPING_METHODS.items()
SHOPS = ("shopify", "woocommerce", "magento", "prestashop", "amazon", "bolcom", "ebay", "etsy")
INTEGRATIONS = dict(enumerate(SHOPS, start=1))
FEATURES = ("api", "panel", "tracking")
TRACKING_STATUSES = ("Ready to send", "En route to sorting center", "Sorted", "Delivered")
_SLUG = r"^[a-z0-9][a-z0-9_.-]*$"
_MAX_KEPT = 10_000  # parcels and orders kept in memory; the oldest go first
_PDF = b"%PDF-1.4\n% detector sandbox label\n%%EOF\n"


class FaultSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    component: str
    mode: Literal["error", "slow", "timeout"]
    seconds: float = Field(gt=0, le=7 * 86400)
    market: str | None = None

    @field_validator("component")
    @classmethod
    def _known_component(cls, value: str) -> str:
        group, _, slug = value.partition("/")
        if group == "sendcloud" and slug not in FEATURES:
            raise ValueError(f"unknown sendcloud feature {slug!r}; known: {', '.join(FEATURES)}")
        if group not in ("carriers", "integrations", "sendcloud") or not re.match(_SLUG, slug):
            raise ValueError("expected carriers/<slug>, integrations/<slug> or sendcloud/<feature>")
        return value

    @field_validator("market")
    @classmethod
    def _country_code(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z]{2}", value):
            raise ValueError("expected a 2-letter country code such as DE")
        return value.upper() if value else None


@dataclass
class Fault:
    component: str
    mode: str
    market: str | None
    started_at: float
    until: float

    def to_json(self) -> dict[str, Any]:
        started, until = format_time(self.started_at), format_time(self.until)
        return {**asdict(self), "started_at": started, "until": until}


@dataclass
class Parcel:
    id: int
    carrier: str
    country: str
    method_id: int
    name: str
    order_number: str
    tracking_number: str
    created_at: float
    has_label: bool
    cancelled_at: float | None = None


@dataclass
class Order:
    id: int
    integration_id: int
    order_id: str
    order_number: str
    country: str | None
    created_at: float
    imports_at: float


class Sandbox:
    """The platform's state: faults, parcels, orders. One per app; no globals."""

    def __init__(
        self,
        *,
        seed: int | None,
        clock: Clock,
        latency: tuple[float, float],
        slow_seconds: float,
        import_delay: tuple[float, float],
    ) -> None:
        self.rng = random.Random(seed)
        self.clock = clock
        self.latency, self.slow_seconds, self.import_delay = latency, slow_seconds, import_delay
        self.faults: dict[tuple[str, str | None], Fault] = {}
        self.changed = asyncio.Event()
        self.closing = False
        self.parcels: dict[int, Parcel] = {}
        self.orders: dict[int, Order] = {}
        self.order_keys: dict[tuple[int, str], int] = {}
        self.ids = itertools.count(1)

    def notify(self) -> None:
        # A fresh event per change wakes every hung request once, without clearing races.
        self.changed.set()
        self.changed = asyncio.Event()

    def active_faults(self) -> list[Fault]:
        now = self.clock.now()
        self.faults = {key: f for key, f in self.faults.items() if f.until > now}
        return list(self.faults.values())

    def fault(self, component: str, market: str | None) -> Fault | None:
        """The fault hitting a request: a market's own fault first, then a market-wide one."""
        now = self.clock.now()
        for key in ((component, market), (component, None)):
            found = self.faults.get(key)
            if found is not None and found.until > now:
                return found
        return None

    async def disrupt(self, request: web.Request, component: str, market: str | None) -> None:
        fault = self.fault(component, market)
        if fault is None:
            return
        if fault.mode == "error":
            raise _error(503, f"{component} is unavailable (sandbox fault)")
        if fault.mode == "slow":
            await asyncio.sleep(self.slow_seconds)
            return
        await self._hang(fault, request)

    async def _hang(self, fault: Fault, request: web.Request) -> None:
        # `timeout`: answer only once the fault is gone, so the client's own timeout is what
        # ends the request. A client that gave up gets nothing done on its behalf.
        while self.faults.get((fault.component, fault.market)) is fault:
            remaining = fault.until - self.clock.now()
            transport = request.transport
            if remaining <= 0:
                return
            if self.closing or transport is None or transport.is_closing():
                raise _error(504, f"{fault.component} did not answer (sandbox fault)")
            with contextlib.suppress(TimeoutError):
                # Re-check at least every second: a manual clock moves without telling us.
                await asyncio.wait_for(self.changed.wait(), min(remaining, 1.0))

    def keep(self, table: dict[int, Any], item: Any) -> None:
        table[item.id] = item
        if len(table) > _MAX_KEPT:
            del table[next(iter(table))]


SANDBOX = web.AppKey("sandbox", Sandbox)
_ERRORS: dict[int, type[web.HTTPException]] = {
    400: web.HTTPBadRequest,
    401: web.HTTPUnauthorized,
    404: web.HTTPNotFound,
    503: web.HTTPServiceUnavailable,
    504: web.HTTPGatewayTimeout,
}


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.HTTPException:
    """Sendcloud v2's error shape: {"error": {"code": 503, "message": "..."}}."""
    body = json.dumps({"error": {"code": status, "message": message}})
    return _ERRORS[status](text=body, content_type="application/json", headers=headers)


def _v3_error(pointer: str, detail: str) -> web.HTTPException:
    """Sendcloud v3's error shape: {"errors": [{"status", "code", "detail", "source"}]}."""
    error = {"status": "400", "code": "invalid", "detail": detail, "source": {"pointer": pointer}}
    return web.HTTPBadRequest(text=json.dumps({"errors": [error]}), content_type="application/json")


def _problem(exc: ValidationError) -> tuple[str, str]:
    """The first validation error as (dotted field, message)."""
    first = exc.errors()[0]
    return ".".join(str(part) for part in first["loc"]), first["msg"].removeprefix("Value error, ")


async def _json_body(request: web.Request) -> Any:
    try:
        return await request.json()
    except ValueError:
        raise _error(400, "body is not valid JSON") from None


def _authorized(request: web.Request) -> bool:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer":
        return bool(value.strip())
    try:
        auth = BasicAuth.decode(header)
    except ValueError:
        return False
    return bool(auth.login and auth.password)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def _platform(request: web.Request, handler: Handler) -> web.StreamResponse:
    """What every platform request goes through: latency, feature faults, auth."""
    if request.path.startswith("/_sandbox/"):
        return await handler(request)
    sandbox = request.app[SANDBOX]
    await asyncio.sleep(sandbox.rng.uniform(*sandbox.latency))
    feature = request.path.strip("/").split("/")[0]
    if feature in FEATURES:
        await sandbox.disrupt(request, f"sendcloud/{feature}", None)
    if feature == "api" and not _authorized(request):
        challenge = {"WWW-Authenticate": 'Basic realm="api"'}
        raise _error(401, "Invalid username/password.", challenge)
    return await handler(request)


# --------------------------------------------------------------------------- v2: parcels


class _ShipmentRef(BaseModel):
    id: int


class _ParcelIn(BaseModel):
    name: str = Field(min_length=1)
    address: str = Field(min_length=1)
    house_number: str = ""
    city: str = Field(min_length=1)
    postal_code: str = Field(min_length=1)
    country: str = Field(pattern=r"^[A-Z]{2}$")
    weight: str | float = "1.000"
    order_number: str = ""
    request_label: bool = False
    shipment: _ShipmentRef | None = None
    carrier: str | None = Field(default=None, pattern=_SLUG)


def _parcel_json(parcel: Parcel, base: str) -> dict[str, Any]:
    status = {"id": 1000, "message": "Ready to send"}
    if not parcel.has_label:
        status = {"id": 999, "message": "No label"}
    if parcel.cancelled_at is not None:
        status = {"id": 2000, "message": "Cancelled"}
    label_url = f"{base}/api/v2/labels/label_printer/{parcel.id}"
    label = {"normal_printer": [label_url], "label_printer": label_url}
    return {
        "id": parcel.id,
        "name": parcel.name,
        "order_number": parcel.order_number,
        "tracking_number": parcel.tracking_number,
        "carrier": {"code": parcel.carrier},
        "country": {"iso_2": parcel.country},
        "shipment": {"id": parcel.method_id, "name": f"{parcel.carrier} standard"},
        "status": status,
        "date_created": format_time(parcel.created_at),
        "label": label if parcel.has_label and parcel.cancelled_at is None else {},
    }


async def create_parcel(request: web.Request) -> web.Response:
    sandbox = request.app[SANDBOX]
    body = await _json_body(request)
    if not isinstance(body, dict) or not isinstance(body.get("parcel"), dict):
        raise _error(400, 'body must be {"parcel": {...}}')
    try:
        wanted = _ParcelIn.model_validate(body["parcel"])
    except ValidationError as exc:
        field, message = _problem(exc)
        raise _error(400, f"parcel.{field}: {message}") from None
    method_id = wanted.shipment.id if wanted.shipment else 0
    carrier = wanted.carrier or SHIPPING_METHODS.get(method_id)
    if carrier is None:
        raise _error(400, f"parcel.shipment.id: no shipping method {method_id}; give a carrier")
    await sandbox.disrupt(request, f"carriers/{carrier}", wanted.country)
    parcel_id = next(sandbox.ids)
    tracking_number = f"SC{carrier[:3].upper()}{sandbox.rng.randrange(10**9, 10**10)}"
    parcel = Parcel(
        parcel_id,
        carrier,
        wanted.country,
        method_id,
        wanted.name,
        wanted.order_number,
        tracking_number,
        sandbox.clock.now(),
        has_label=wanted.request_label,
    )
    sandbox.keep(sandbox.parcels, parcel)
    return web.json_response({"parcel": _parcel_json(parcel, str(request.url.origin()))})


async def _parcel(request: web.Request) -> Parcel:
    """The parcel in the path, after its carrier's faults had their say."""
    sandbox = request.app[SANDBOX]
    parcel = sandbox.parcels.get(int(request.match_info["parcel_id"]))
    if parcel is None:
        raise _error(404, f"No parcel {request.match_info['parcel_id']}")
    await sandbox.disrupt(request, f"carriers/{parcel.carrier}", parcel.country)
    if request.method == "GET" and (not parcel.has_label or parcel.cancelled_at is not None):
        raise _error(404, f"No label for parcel {parcel.id}")
    return parcel


async def get_label(request: web.Request) -> web.Response:
    parcel = await _parcel(request)
    label = _parcel_json(parcel, str(request.url.origin()))["label"]
    return web.json_response({"label": label})


async def get_label_pdf(request: web.Request) -> web.Response:
    await _parcel(request)
    return web.Response(body=_PDF, content_type="application/pdf")


async def cancel_parcel(request: web.Request) -> web.Response:
    parcel = await _parcel(request)
    if parcel.cancelled_at is None:
        parcel.cancelled_at = request.app[SANDBOX].clock.now()
    return web.json_response({"status": "cancelled", "message": "Parcel has been cancelled"})


async def user(request: web.Request) -> web.Response:
    header = request.headers["Authorization"]  # present: the middleware checked it
    login = BasicAuth.decode(header).login if header.lower().startswith("basic ") else "token"
    account = {"username": login, "company_name": "Sandbox Shop B.V.", "email": "ops@example.com"}
    return web.json_response({"user": account})


async def shipping_methods(request: web.Request) -> web.Response:
    methods = [{"id": i, "name": f"{slug} standard", "carrier": slug} for i, slug in _METHODS]
    return web.json_response({"shipping_methods": methods})


# ---------------------------------------------------------------------------- v3: orders


class _IntegrationRef(BaseModel):
    id: int


class _AddressIn(BaseModel):
    country_code: str = Field(pattern=r"^[A-Z]{2}$")


class _OrderIn(BaseModel):
    order_id: str = Field(min_length=1, max_length=255)
    order_number: str = ""
    integration: _IntegrationRef
    shipping_address: _AddressIn | None = None


_BATCH = TypeAdapter(Annotated[list[_OrderIn], Field(min_length=1, max_length=100)])


def _order_json(order: Order, now: float) -> dict[str, Any]:
    imported = now >= order.imports_at
    return {
        "id": order.id,
        "order_id": order.order_id,
        "order_number": order.order_number,
        "integration": {"id": order.integration_id},
        "created_at": format_time(order.created_at),
        "imported_at": format_time(order.imports_at) if imported else None,
        "status": {"code": "imported" if imported else "pending"},
    }


async def upsert_orders(request: web.Request) -> web.Response:
    sandbox = request.app[SANDBOX]
    try:
        batch = _BATCH.validate_python(await _json_body(request))
    except ValidationError as exc:
        field, message = _problem(exc)
        raise _v3_error("/" + field.replace(".", "/"), message) from None
    for index, order in enumerate(batch):
        if order.integration.id not in INTEGRATIONS:
            detail = f"unknown integration {order.integration.id}"
            raise _v3_error(f"/{index}/integration/id", detail)
    # All-or-nothing: every fault is applied before any order is stored.
    targets = {(INTEGRATIONS[o.integration.id], _country(o)): None for o in batch}
    for shop, market in targets:
        await sandbox.disrupt(request, f"integrations/{shop}", market)
    saved = [_upsert(sandbox, order) for order in batch]
    now = sandbox.clock.now()
    return web.json_response({"data": [_order_json(order, now) for order in saved]})


def _country(order: _OrderIn) -> str | None:
    return order.shipping_address.country_code if order.shipping_address else None


def _upsert(sandbox: Sandbox, wanted: _OrderIn) -> Order:
    key = (wanted.integration.id, wanted.order_id)
    existing = sandbox.orders.get(sandbox.order_keys.get(key, 0))
    if existing is not None:
        existing.order_number, existing.country = wanted.order_number, _country(wanted)
        return existing
    now = sandbox.clock.now()
    order = Order(
        next(sandbox.ids),
        wanted.integration.id,
        wanted.order_id,
        wanted.order_number,
        _country(wanted),
        now,
        now + sandbox.rng.uniform(*sandbox.import_delay),
    )
    sandbox.keep(sandbox.orders, order)
    sandbox.order_keys[key] = order.id
    return order


def _stored_order(request: web.Request) -> Order:
    order = request.app[SANDBOX].orders.get(int(request.match_info["order"]))
    if order is None:
        raise _error(404, f"No order {request.match_info['order']}")
    return order


async def get_order(request: web.Request) -> web.Response:
    order = _stored_order(request)
    return web.json_response({"data": _order_json(order, request.app[SANDBOX].clock.now())})


async def delete_order(request: web.Request) -> web.Response:
    order = _stored_order(request)
    sandbox = request.app[SANDBOX]
    del sandbox.orders[order.id]
    sandbox.order_keys.pop((order.integration_id, order.order_id), None)
    return web.Response(status=204)


async def integrations(request: web.Request) -> web.Response:
    sandbox = request.app[SANDBOX]
    now, faults = sandbox.clock.now(), sandbox.active_faults()
    data = []
    for shop_id, shop in INTEGRATIONS.items():
        failing = [
            f.started_at
            for f in faults
            if f.component == f"integrations/{shop}" and f.mode != "slow"
        ]
        since = min(failing, default=None)
        fetched = now - (shop_id * 13) % 60  # shops are fetched on staggered schedules
        data.append(
            {
                "id": shop_id,
                "system": shop,
                "shop_name": f"Sandbox {shop.title()}",
                "last_fetched_at": format_time(fetched if since is None else min(fetched, since)),
                "started_failing_at": None if since is None else format_time(since),
            }
        )
    return web.json_response({"data": data})


# ------------------------------------------------------------- panel, tracking, sandbox


async def panel(request: web.Request) -> web.Response:
    html = (
        "<!doctype html><html><head><title>Sendcloud sandbox panel</title></head><body>"
        "<h1>Sendcloud</h1><p>Shipping made easy.</p></body></html>"
    )
    return web.Response(text=html, content_type="text/html")


async def tracking_feed(request: web.Request) -> web.Response:
    sandbox, carrier = request.app[SANDBOX], request.match_info["carrier"]
    country = request.query.get("country", "").upper() or None
    stall = sandbox.fault(f"carriers/{carrier}", country)
    newest = stall.started_at if stall else sandbox.clock.now() - sandbox.rng.uniform(2, 30)
    updates, at = [], newest
    for n in range(10):
        failed = stall is not None and stall.mode == "error" and n < 3
        status = "Announcement failed" if failed else sandbox.rng.choice(TRACKING_STATUSES)
        number = f"SC{carrier[:3].upper()}{sandbox.rng.randrange(10**9, 10**10)}"
        updates.append({"tracking_number": number, "status": status, "at": format_time(at)})
        at -= sandbox.rng.uniform(5, 60)
    feed = {"carrier": carrier, "country": country, "last_update_at": format_time(newest)}
    return web.json_response({**feed, "updates": updates})


async def add_fault(request: web.Request) -> web.Response:
    sandbox = request.app[SANDBOX]
    body = await request.text()
    try:
        wanted = FaultSpec.model_validate_json(body or "null")
    except ValidationError as exc:
        field, message = _problem(exc)
        return web.json_response({"error": f"{field or 'body'}: {message}"}, status=400)
    now = sandbox.clock.now()
    fault = Fault(wanted.component, wanted.mode, wanted.market, now, now + wanted.seconds)
    sandbox.faults[(fault.component, fault.market)] = fault  # the same target again: replaced
    sandbox.notify()
    return web.json_response({"fault": fault.to_json()}, status=201)


async def list_faults(request: web.Request) -> web.Response:
    faults = request.app[SANDBOX].active_faults()
    return web.json_response({"faults": [fault.to_json() for fault in faults]})


async def clear_faults(request: web.Request) -> web.Response:
    sandbox, component = request.app[SANDBOX], request.query.get("component")
    gone = [key for key in sandbox.faults if component in (None, key[0])]
    for key in gone:
        del sandbox.faults[key]
    sandbox.notify()
    return web.json_response({"cleared": len(gone)})


async def list_parcels(request: web.Request) -> web.Response:
    parcels = [asdict(parcel) for parcel in request.app[SANDBOX].parcels.values()]
    return web.json_response({"parcels": parcels})


async def _release_hung_requests(app: web.Application) -> None:
    app[SANDBOX].closing = True  # otherwise shutdown waits for every `timeout` fault to end
    app[SANDBOX].notify()


def make_app(
    *,
    seed: int | None = None,
    clock: Clock | None = None,
    latency: tuple[float, float] = (0.003, 0.05),
    slow_seconds: float = 6.0,
    import_delay: tuple[float, float] = (0.1, 1.0),
) -> web.Application:
    """The sandbox app. `latency` bounds every healthy answer's delay, `slow_seconds` is the
    added delay of a `slow` fault, `import_delay` the push-to-imported time of an order."""
    app = web.Application(middlewares=[_platform])
    app[SANDBOX] = Sandbox(
        seed=seed,
        clock=clock or SystemClock(),
        latency=latency,
        slow_seconds=slow_seconds,
        import_delay=import_delay,
    )
    app.on_shutdown.append(_release_hung_requests)
    app.router.add_routes(
        [
            web.get("/api/v2/user", user),
            web.get("/api/v2/shipping_methods", shipping_methods),
            web.post("/api/v2/parcels", create_parcel),
            web.get(r"/api/v2/labels/{parcel_id:\d+}", get_label),
            web.get(r"/api/v2/labels/label_printer/{parcel_id:\d+}", get_label_pdf),
            web.post(r"/api/v2/parcels/{parcel_id:\d+}/cancel", cancel_parcel),
            web.post("/api/v3/orders", upsert_orders),
            web.get(r"/api/v3/orders/{order:\d+}", get_order),
            web.delete(r"/api/v3/orders/{order:\d+}", delete_order),
            web.get("/api/v3/integrations", integrations),
            web.get("/panel/", panel),
            web.get("/tracking/{carrier}", tracking_feed),
            web.post("/_sandbox/faults", add_fault),
            web.get("/_sandbox/faults", list_faults),
            web.delete("/_sandbox/faults", clear_faults),
            web.get("/_sandbox/parcels", list_parcels),
        ]
    )
    return app


def run_sandbox(host: str = "127.0.0.1", port: int = 9465) -> None:
    """Serve the sandbox until interrupted (`detector sandbox`)."""
    web.run_app(make_app(), host=host, port=port)
