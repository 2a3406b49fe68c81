"""`label_creation`: create a parcel with a label for one carrier and market, then cancel it.

The round trip a shop makes (Sendcloud API v2): POST the parcel with `request_label: true`,
check the answer carries a label, fetch it, and - always, also when a check failed - cancel
the parcel, so a probe running every minute leaves no parcels behind on the test account.
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
    http_error,
    options_of,
    passed,
    read_json,
)


class LabelCreationOptions(ProbeOptions):
    parcels_path: str = "/api/v2/parcels"
    label_path: str = "/api/v2/labels/{parcel_id}"
    cancel_path: str = "/api/v2/parcels/{parcel_id}/cancel"
    carrier: str | None = None  # default: the component's slug, `dhl` for carriers/dhl
    shipping_method_id: int = 8
    country: str = Field(default="NL", pattern=r"^[A-Z]{2}$")  # without a `market` label
    weight: str | float = "1.000"  # kg
    download_label: bool = True  # also fetch the label document and check it is a PDF
    cancel_timeout: Duration = 5.0


async def probe(
    spec: ProbeSpec,
    *,
    session: aiohttp.ClientSession,
    log: FilteringBoundLogger,
    clock: Clock,
) -> ProbeResult:
    options = options_of(spec, LabelCreationOptions)
    headers = auth_headers(spec)
    parcel = await _create_parcel(spec, options, session, headers)
    parcel_id = parcel["id"]
    cancel_error: str | None = None
    try:
        await _check_label(spec, options, session, headers, parcel)
    finally:
        cancel_url = spec.url(options.cancel_path, parcel_id=parcel_id)
        cancel = _cancel(session, cancel_url, headers, options.cancel_timeout, log, spec.id)
        cancel_error = await cleanup(cancel)
    if cancel_error:  # only reached when the label checks passed: then the cancel is the news
        raise ProbeFailed(cancel_error)
    return passed(spec, clock)


def _parcel_body(spec: ProbeSpec, options: LabelCreationOptions) -> dict[str, Any]:
    country = spec.labels.get("market", options.country).upper()
    order_number = f"detector-{spec.id}-{uuid4().hex[:12]}"
    parcel = {
        "name": "Detector Probe",
        "company_name": "Status Monitoring",
        **recipient_address(country),
        "country": country,
        "weight": options.weight,
        "order_number": order_number,
        "request_label": True,
        "shipment": {"id": options.shipping_method_id},
        "carrier": options.carrier or spec.slug,
    }
    return {"parcel": parcel}


async def _create_parcel(
    spec: ProbeSpec,
    options: LabelCreationOptions,
    session: aiohttp.ClientSession,
    headers: dict[str, str],
) -> dict[str, Any]:
    body = _parcel_body(spec, options)
    async with session.post(spec.url(options.parcels_path), json=body, headers=headers) as resp:
        await expect_status(resp)
        answer = await read_json(resp)
    parcel = answer.get("parcel") if isinstance(answer, dict) else None
    if not isinstance(parcel, dict) or not isinstance(parcel.get("id"), int):
        raise ProbeFailed(f"no parcel id in the answer to POST {options.parcels_path}")
    return parcel


async def _check_label(
    spec: ProbeSpec,
    options: LabelCreationOptions,
    session: aiohttp.ClientSession,
    headers: dict[str, str],
    parcel: dict[str, Any],
) -> None:
    if not _label_url(parcel):
        status = parcel.get("status")
        message = status.get("message") if isinstance(status, dict) else status
        raise ProbeFailed(f"no label for parcel {parcel['id']} (status {message!r})")
    url = spec.url(options.label_path, parcel_id=parcel["id"])
    async with session.get(url, headers=headers) as resp:
        await expect_status(resp)
        answer = await read_json(resp)
    document = _label_url(answer if isinstance(answer, dict) else {})
    if not document:
        raise ProbeFailed(f"no label link in GET {resp.url.path}")
    if options.download_label:
        async with session.get(document, headers=headers) as resp:
            await expect_status(resp)
            if not (await resp.read()).startswith(b"%PDF"):
                raise ProbeFailed(f"label {resp.url.path} is not a PDF")


def _label_url(payload: dict[str, Any]) -> str | None:
    label = payload.get("label")
    url = label.get("label_printer") if isinstance(label, dict) else None
    return url if isinstance(url, str) and url else None


async def _cancel(
    session: aiohttp.ClientSession,
    url: str,
    headers: dict[str, str],
    timeout: float,
    log: FilteringBoundLogger,
    probe_id: str,
) -> str | None:
    """Cancel the parcel; the error text if that failed. Never raises but CancelledError."""
    try:
        async with asyncio.timeout(timeout), session.post(url, headers=headers) as resp:
            if resp.status in (200, 202):  # 202: the carrier cancels asynchronously
                return None
            error = f"cancel failed: {await http_error(resp)}"
    except Exception as exc:
        error = f"cancel failed: {describe(exc)}"
    log.warning("parcel_cancel_failed", probe=probe_id, url=url, error=error)
    return error
