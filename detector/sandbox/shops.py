"""Shop endpoints: v3 orders and integrations."""

from __future__ import annotations

from typing import Annotated, Any

from aiohttp import web
from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from detector.sandbox.state import (
    INTEGRATIONS,
    SANDBOX,
    Order,
    Sandbox,
    _error,
    _json_body,
    _problem,
    _v3_error,
)
from detector.timeutil import format_time

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
