"""Fault injection and inspection: the /_sandbox endpoints."""

from __future__ import annotations

import re
from dataclasses import asdict
from typing import Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from detector.sandbox.state import _SLUG, FEATURES, SANDBOX, Fault, _problem


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
