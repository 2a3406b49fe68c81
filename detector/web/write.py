"""The bearer-protected write API that on-call engineers and deploy pipelines call: recording
and flagging deploys, opening incidents by hand and updating them, maintenances and the
config reload.

Several named tokens; the name of the one presented is the actor of the audit record every
accepted write leaves (`accepted`, `detector.store.audit`). Rejected writes (4xx) are logged,
not stored. Writes go through `Control`, which the daemon implements, so the engine sees every
deploy, flag and maintenance as it happens. `detector.web.app` mounts these handlers in `make_app`.
Every error is `{"error": "<field or thing>: <what is wrong>"}` — never a traceback.
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import orjson
import structlog
from aiohttp import web

from detector.clock import Clock
from detector.model import (
    ComponentStatus,
    Deploy,
    Incident,
    IncidentStatus,
    IncidentUpdate,
    Maintenance,
)
from detector.store.audit import AuditEntry, auditing
from detector.store.base import NotFound, Store, StoreError
from detector.web.body import (
    COMPONENT_ID,
    MAX_BODY_CHARS,
    SAFE_ID,
    ApiError,
    Body,
    deploy_json,
    incident_json,
    json_response,
    maintenance_json,
    update_json,
)

T = TypeVar("T")
log = structlog.get_logger(__name__)
ACTOR = web.RequestKey("actor", str)  # the name of the token a request presented

MANUAL_STATUSES = (IncidentStatus.IDENTIFIED, IncidentStatus.MONITORING, IncidentStatus.RESOLVED)
OPEN_STATUSES = (IncidentStatus.INVESTIGATING, IncidentStatus.IDENTIFIED, IncidentStatus.MONITORING)
OPEN_IMPACTS = (
    ComponentStatus.DEGRADED_PERFORMANCE,
    ComponentStatus.PARTIAL_OUTAGE,
    ComponentStatus.MAJOR_OUTAGE,
)
_MAX_FUTURE_SECONDS = 300.0  # a deploy `at` further ahead than this is a clock or typing error
_MAX_DEPLOY_AGE_SECONDS = 30 * 86400.0  # a deploy older than a month opens nothing; a typo
_MAX_MAINTENANCE_SECONDS = 90 * 86400.0
_MAX_MAINTENANCE_LEAD_SECONDS = 366 * 86400.0


class Control(Protocol):
    """What the write API asks of the daemon. Implementations raise `store.NotFound` for an
    unknown id, `store.StoreError` when the store fails (-> 503), and `ValueError` with a
    one-line message for a well-formed request the current state refuses (-> 409)."""

    async def record_deploy(self, deploy: Deploy) -> Deploy: ...

    async def flag_deploy_bad(self, deploy_id: str) -> Deploy: ...

    async def update_incident(
        self, incident_id: str, status: IncidentStatus, body: str
    ) -> IncidentUpdate: ...

    async def open_incident(
        self,
        component: str,
        status: IncidentStatus,
        component_status: ComponentStatus,
        title: str,
        body: str,
    ) -> Incident: ...

    async def add_maintenance(self, m: Maintenance) -> Maintenance: ...

    async def cancel_maintenance(self, maintenance_id: str) -> None: ...

    async def reload(self) -> tuple[bool, str]: ...

    def readiness(self) -> Mapping[str, bool]: ...


# ---------------------------------------------------------------------------- the handlers


@dataclass
class WriteApi:
    store: Store
    control: Control
    clock: Clock
    tokens: Mapping[str, str]  # name -> token; the name is the actor in the audit trail
    max_body_bytes: int

    # ------------------------------------------------------------------ plumbing

    def authorize(self, request: web.Request) -> str:
        """The name of the token presented; 401/403 otherwise."""
        if not self.tokens:
            raise ApiError(403, "write API disabled: no API token configured")
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise ApiError(401, "authorization: bearer token required", _CHALLENGE)
        try:  # aiohttp hands undecodable header bytes on as lone surrogates
            presented = given.strip().encode()
        except UnicodeEncodeError:
            raise ApiError(401, "authorization: invalid token", _CHALLENGE_INVALID) from None
        actor = None
        for name, token in self.tokens.items():  # every one compared: time says nothing
            if hmac.compare_digest(presented, token.encode()):
                actor = name
        if actor is None:
            raise ApiError(401, "authorization: invalid token", _CHALLENGE_INVALID)
        request[ACTOR] = actor
        return actor

    async def accepted(
        self,
        actor: str,
        action: str,
        target: str,
        details: Mapping[str, Any],
        what: str,
        call: Callable[[], Awaitable[T]],
    ) -> T:
        """Runs an accepted write with its audit record: in the change's own transaction
        when the change is a store write, else (reload) right after it."""
        entry = AuditEntry(self.clock.now(), actor, action, target, details)
        with auditing(entry) as announced:
            result = await _controlled(what, call())
        if not announced.written:
            try:
                await asyncio.to_thread(self.store.add_audit, entry)
            except StoreError as exc:  # the change is made: say so, and say what is missing
                log.error("audit.write_failed", actor=actor, action=action, error=str(exc))
        log.info("api.write", actor=actor, action=action, target=target)
        return result

    async def read_json(self, request: web.Request, *, optional: bool = False) -> dict[str, Any]:
        if (request.content_length or 0) > self.max_body_bytes:
            raise ApiError(413, f"body: larger than {self.max_body_bytes} bytes")
        if optional and not request.body_exists:
            return {}
        if request.content_type != "application/json":
            raise ApiError(415, "content-type: expected application/json")
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise ApiError(413, f"body: larger than {self.max_body_bytes} bytes") from None
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise ApiError(400, "body: not valid JSON") from None
        if not isinstance(data, dict):
            raise ApiError(400, "body: expected a JSON object")
        return data

    async def check_components(self, components: tuple[str, ...]) -> None:
        known = {record.id for record in await asyncio.to_thread(self.store.list_components)}
        unknown = [component for component in components if component not in known]
        if unknown:
            raise ApiError(400, f"components: unknown component {unknown[0]!r}")

    # ------------------------------------------------------------------ operations

    async def reload(self, request: web.Request) -> web.Response:
        actor = self.authorize(request)
        Body(await self.read_json(request, optional=True), ())

        async def reload() -> str:
            ok, message = await self.control.reload()
            if not ok:  # the files on disk are bad input: 422, the old set keeps running
                raise ApiError(422, message)
            return message

        message = await self.accepted(actor, "reload", "", {}, "reload", reload)
        return json_response({"status": "reloaded", "message": message})

    # ------------------------------------------------------------------ writes

    async def post_deploy(self, request: web.Request) -> web.Response:
        actor = self.authorize(request)
        fields = ("id", "service", "version", "components", "bad", "at")
        body = Body(await self.read_json(request), fields)
        deploy_id = (
            body.optional_text("id", max_len=128, pattern=SAFE_ID) or f"d-{uuid.uuid4().hex[:12]}"
        )
        service, version = body.text("service", max_len=100), body.text("version", max_len=100)
        components, bad, at = body.components(), body.flag("bad"), body.optional_time("at")
        now = self.clock.now()
        if at is not None and at > now + _MAX_FUTURE_SECONDS:
            raise ApiError(400, "at: more than 5 minutes in the future")
        if at is not None and at < now - _MAX_DEPLOY_AGE_SECONDS:
            raise ApiError(400, "at: more than 30 days in the past")
        await self.check_components(components)
        deploy = Deploy(now if at is None else at, deploy_id, service, version, components, bad)
        recorded = await self.accepted(
            actor,
            "deploy.record",
            deploy_id,
            deploy_json(deploy),
            f"deploy {deploy_id!r}",
            lambda: self.control.record_deploy(deploy),
        )
        return json_response(deploy_json(recorded), 201)

    async def flag_deploy_bad(self, request: web.Request) -> web.Response:
        actor = self.authorize(request)
        Body(await self.read_json(request, optional=True), ())
        deploy_id = _path_id(request)
        flagged = await self.accepted(
            actor,
            "deploy.flag_bad",
            deploy_id,
            {},
            f"deploy {deploy_id!r}",
            lambda: self.control.flag_deploy_bad(deploy_id),
        )
        return json_response(deploy_json(flagged))

    async def post_incident_update(self, request: web.Request) -> web.Response:
        actor = self.authorize(request)
        body = Body(await self.read_json(request), ("status", "body"))
        status = body.text("status", max_len=20)
        if status not in MANUAL_STATUSES:
            raise ApiError(400, "status: expected one of identified, monitoring, resolved")
        text = body.text("body", max_len=MAX_BODY_CHARS, multi_line=True)
        incident_id = _path_id(request)
        update = await self.accepted(
            actor,
            "incident.update",
            incident_id,
            {"status": status, "body": text},
            f"incident {incident_id!r}",
            lambda: self.control.update_incident(incident_id, IncidentStatus(status), text),
        )
        return json_response(update_json(incident_id, update), 201)

    async def post_incident(self, request: web.Request) -> web.Response:
        """On-call opens an incident by hand, for what the probes do not cover."""
        actor = self.authorize(request)
        fields = ("component", "title", "body", "status", "component_status")
        body = Body(await self.read_json(request), fields)
        component = body.text("component", max_len=200, pattern=COMPONENT_ID)
        title = body.text("title", max_len=200)
        text = body.text("body", max_len=MAX_BODY_CHARS, multi_line=True)
        status = body.optional_text("status", max_len=20) or IncidentStatus.INVESTIGATING
        if status not in OPEN_STATUSES:
            raise ApiError(400, "status: expected one of investigating, identified, monitoring")
        impact = body.optional_text("component_status", max_len=30) or ComponentStatus.MAJOR_OUTAGE
        if impact not in OPEN_IMPACTS:
            choices = ", ".join(OPEN_IMPACTS)
            raise ApiError(400, f"component_status: expected one of {choices}")
        await self.check_components((component,))
        details = {"component": component, "title": title, "body": text, "status": status,
                   "component_status": impact}  # fmt: skip
        incident = await self.accepted(
            actor,
            "incident.open",
            component,
            details,
            f"component {component!r}",
            lambda: self.control.open_incident(
                component, IncidentStatus(status), ComponentStatus(impact), title, text
            ),
        )
        return json_response(incident_json(incident), 201)

    async def post_maintenance(self, request: web.Request) -> web.Response:
        actor = self.authorize(request)
        body = Body(await self.read_json(request), ("start", "end", "components", "title"))
        start, end = body.time("start"), body.time("end")
        components, title = body.components(), body.text("title", max_len=200)
        now = self.clock.now()
        if end <= start:
            raise ApiError(400, "end: must be after start")
        if end <= now:
            raise ApiError(400, "end: already in the past")
        if end - start > _MAX_MAINTENANCE_SECONDS:
            raise ApiError(400, "end: a maintenance lasts at most 90 days")
        if start > now + _MAX_MAINTENANCE_LEAD_SECONDS:
            raise ApiError(400, "start: more than a year ahead")
        await self.check_components(components)
        maintenance_id = secrets.token_hex(6)  # here, not in the store: the audit names it
        maintenance = Maintenance(start, end, components, title, id=maintenance_id, created_at=now)
        added = await self.accepted(
            actor,
            "maintenance.add",
            maintenance_id,
            maintenance_json(maintenance),
            "maintenance",
            lambda: self.control.add_maintenance(maintenance),
        )
        return json_response(maintenance_json(added), 201)

    async def delete_maintenance(self, request: web.Request) -> web.Response:
        actor = self.authorize(request)
        maintenance_id = _path_id(request)
        await self.accepted(
            actor,
            "maintenance.cancel",
            maintenance_id,
            {},
            f"maintenance {maintenance_id!r}",
            lambda: self.control.cancel_maintenance(maintenance_id),
        )
        return web.Response(status=204)


_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="detector"'}
_CHALLENGE_INVALID = {"WWW-Authenticate": 'Bearer realm="detector", error="invalid_token"'}


async def _controlled(what: str, call: Awaitable[T]) -> T:
    """Awaits a Control call: NotFound -> 404 and ValueError -> 409, both naming `what`."""
    try:
        return await call
    except NotFound:
        raise ApiError(404, f"{what}: not found") from None
    except ValueError as exc:
        raise ApiError(409, f"{what}: {exc}") from None


def _path_id(request: web.Request) -> str:
    value = request.match_info["id"]
    if not SAFE_ID.fullmatch(value):  # nothing stored has such an id; and keep it out of messages
        raise ApiError(404, "id: not found")
    return value
