"""The sandbox's state (faults, parcels, orders), its constants and shared error helpers."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
from dataclasses import asdict, dataclass
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from detector.clock import Clock
from detector.timeutil import format_time

CARRIERS = ("dhl", "postnl", "dpd", "ups", "colissimo", "correos", "gls", "bpost", "hermes", "brt")
# Shipping method ids for `shipment.id`; 8 is Sendcloud's own unstamped letter.
SHIPPING_METHODS = {8: "sendcloud"} | {1001 + n: slug for n, slug in enumerate(CARRIERS)}
SHOPS = ("shopify", "woocommerce", "magento", "prestashop", "amazon", "bolcom", "ebay", "etsy")
INTEGRATIONS = dict(enumerate(SHOPS, start=1))
FEATURES = ("api", "panel", "tracking")
TRACKING_STATUSES = ("Ready to send", "En route to sorting center", "Sorted", "Delivered")
_SLUG = r"^[a-z0-9][a-z0-9_.-]*$"
_MAX_KEPT = 10_000  # parcels and orders kept in memory; the oldest go first


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
