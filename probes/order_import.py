"""`order_import`: push a test order to a shop integration and wait until it shows imported.

Sendcloud API v3: `GET /api/v3/integrations` first - it names the integration's id and is a
cheap freshness signal (`started_failing_at`, `last_fetched_at`) - then `POST /api/v3/orders`
with a unique `order_id`, then poll the order until `imported_at` is set, failing past
`max_lag`. The test order is deleted afterwards so the test shop stays clean.
"""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import uuid4

import aiohttp
from pydantic import Field
from structlog.typing import FilteringBoundLogger

from detector.clock import Clock
from detector.model import ProbeResult
from detector.timeutil import TimeFormatError, format_duration, format_time, parse_time
from probes.addresses import recipient_address
from probes.base import (
    Duration,
    ProbeFailed,
    ProbeOptions,
    ProbeSpec,
    auth_headers,
    cleanup,
    describe,
    expect_status,
    options_of,
    passed,
    read_json,
)


class OrderImportOptions(ProbeOptions):
    orders_path: str = "/api/v3/orders"
    order_path: str = "/api/v3/orders/{id}"
    integrations_path: str = "/api/v3/integrations"
    integration_id: int | None = None  # default: the integration whose `system` is the slug
    country: str = Field(default="NL", pattern=r"^[A-Z]{2}$")  # without a `market` label
    max_lag: Duration = 30.0  # push to imported
    poll_interval: Duration = 0.5
    check_freshness: bool = True
    max_fetch_age: Duration = 900.0  # `last_fetched_at` older than this fails the probe
    delete_after: bool = True


async def probe(
    spec: ProbeSpec,
    *,
    session: aiohttp.ClientSession,
    log: FilteringBoundLogger,
    clock: Clock,
) -> ProbeResult:
    options = options_of(spec, OrderImportOptions)
    headers = auth_headers(spec)
    integration_id = options.integration_id
    if integration_id is None or options.check_freshness:
        integration = await _integration(spec, options, session, headers)
        if options.check_freshness:
            _check_freshness(integration, options, clock)
        integration_id = integration["id"]
    order = _order(spec, options, integration_id, clock)
    async with session.post(spec.url(options.orders_path), json=[order], headers=headers) as resp:
        await expect_status(resp, (200, 201))
        answer = await read_json(resp)
    order_url = spec.url(options.order_path, id=_created_id(answer, options))
    try:
        await _wait_imported(order_url, options, session, headers)
    finally:
        if options.delete_after:
            await cleanup(_delete(session, order_url, headers, log, spec.id))
    return passed(spec, clock)


async def _integration(
    spec: ProbeSpec,
    options: OrderImportOptions,
    session: aiohttp.ClientSession,
    headers: dict[str, str],
) -> dict[str, Any]:
    async with session.get(spec.url(options.integrations_path), headers=headers) as resp:
        await expect_status(resp)
        answer = await read_json(resp)
    entries = answer.get("data") if isinstance(answer, dict) else None
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), int):
            continue
        if options.integration_id is None and entry.get("system") == spec.slug:
            return entry
        if entry["id"] == options.integration_id:
            return entry
    wanted_name = options.integration_id if options.integration_id is not None else spec.slug
    raise ProbeFailed(f"integration {wanted_name!r} not in GET {options.integrations_path}")


def _check_freshness(
    integration: dict[str, Any], options: OrderImportOptions, clock: Clock
) -> None:
    name = integration.get("system") or integration["id"]
    if integration.get("started_failing_at"):
        raise ProbeFailed(f"integration {name} failing since {integration['started_failing_at']}")
    fetched = integration.get("last_fetched_at")
    if not fetched:
        return  # never fetched: a new shop, not a stale one
    try:
        age = clock.now() - parse_time(fetched)
    except TimeFormatError as exc:
        raise ProbeFailed(f"integration {name}: {exc}") from None
    if age > options.max_fetch_age:
        limit = format_duration(options.max_fetch_age)
        raise ProbeFailed(f"integration {name} last fetched {format_duration(age)} ago > {limit}")


def _order(
    spec: ProbeSpec, options: OrderImportOptions, integration_id: int, clock: Clock
) -> dict[str, Any]:
    country = spec.labels.get("market", options.country).upper()
    order_id = f"detector-{spec.id}-{uuid4().hex[:12]}"
    address = recipient_address(country)
    price = {"value": 1.0, "currency": "EUR"}
    return {
        "order_id": order_id,
        "order_number": order_id,
        "integration": {"id": integration_id},
        "order_created_at": format_time(clock.now()),
        "order_details": {
            "status": {"code": "fulfilled", "message": "Test order"},
            "order_items": [{"name": "Detector test item", "quantity": 1, "unit_price": price}],
        },
        "payment_details": {"total_price": price, "status": {"code": "paid"}},
        "shipping_address": {
            "name": "Detector Probe",
            "address_line_1": f"{address['address']} {address['house_number']}",
            "postal_code": address["postal_code"],
            "city": address["city"],
            "country_code": country,
        },
    }


def _created_id(answer: Any, options: OrderImportOptions) -> int:
    data = answer.get("data") if isinstance(answer, dict) else None
    first = data[0] if isinstance(data, list) and data else None
    order_id = first.get("id") if isinstance(first, dict) else None
    if not isinstance(order_id, int):
        raise ProbeFailed(f"no order id in the answer to POST {options.orders_path}")
    return order_id


async def _wait_imported(
    url: str,
    options: OrderImportOptions,
    session: aiohttp.ClientSession,
    headers: dict[str, str],
) -> None:
    # Real elapsed time, not the injected clock: the lag is what a shop owner waits.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + options.max_lag
    while True:
        async with session.get(url, headers=headers) as resp:
            await expect_status(resp)
            answer = await read_json(resp)
        data = answer.get("data") if isinstance(answer, dict) else None
        if isinstance(data, dict) and data.get("imported_at"):
            return
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise ProbeFailed(f"order not imported after {options.max_lag:g}s")
        await asyncio.sleep(min(options.poll_interval, remaining))  # last look at the deadline


async def _delete(
    session: aiohttp.ClientSession,
    url: str,
    headers: dict[str, str],
    log: FilteringBoundLogger,
    probe_id: str,
) -> str | None:
    """Best effort: a leftover test order is untidy, not an outage, so it never fails a run."""
    try:
        async with asyncio.timeout(5.0), session.delete(url, headers=headers) as resp:
            if resp.status in (200, 202, 204, 404):
                return None
            error = f"HTTP {resp.status}"
    except Exception as exc:
        error = describe(exc)
    log.warning("order_delete_failed", probe=probe_id, url=url, error=error)
    return error
