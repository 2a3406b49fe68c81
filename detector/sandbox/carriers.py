"""Carrier endpoints: v2 parcels and labels, the account, shipping methods, tracking feeds."""

from __future__ import annotations

from typing import Any

from aiohttp import BasicAuth, web
from pydantic import BaseModel, Field, ValidationError

from detector.sandbox.state import (
    _SLUG,
    SANDBOX,
    SHIPPING_METHODS,
    TRACKING_STATUSES,
    Parcel,
    _error,
    _json_body,
    _problem,
)
from detector.timeutil import format_time

_METHODS = SHIPPING_METHODS.items()
_PDF = b"%PDF-1.4\n% detector sandbox label\n%%EOF\n"


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


# ---------------------------------------------------------------------------- tracking


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
