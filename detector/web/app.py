"""The HTTP API: metrics, health, the public status page and its Statuspage v2 JSON, and the
bearer-protected write API that on-call engineers and deploy pipelines call.

Reads go straight to the store (in a worker thread); writes go through `Control`, which the
daemon implements, so the engine sees every deploy, flag and maintenance as it happens; the
write handlers, `Control`, `ApiError` and the request `Body` reader live in `detector.web.write`.
Every response carries security headers (`_security_headers`); HTML also a strict CSP.
Every error is `{"error": "<field or thing>: <what is wrong>"}` — never a traceback.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

import structlog
from aiohttp import web

from detector.clock import Clock
from detector.metrics import Metrics
from detector.store.base import Store, StoreError
from detector.web import statuspage, unsubscribe, v2
from detector.web.i18n import choose_language
from detector.web.page import HISTORY_SECONDS
from detector.web.site import Site
from detector.web.snapshot import DEFAULT_MAX_AGE, Key, Snapshots
from detector.web.write import ACTOR, ApiError, Control, WriteApi, json_response

log = structlog.get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
IncidentsWanted = Literal["none", "unresolved", "recent", "page"]
SNAPSHOTS = web.AppKey("snapshots", Snapshots)


# ---------------------------------------------------------------------------- the app


@dataclass
class _Api:
    store: Store
    control: Control
    metrics: Metrics
    clock: Clock
    page: statuspage.PageInfo

    # ------------------------------------------------------------------ plumbing

    @web.middleware
    async def errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except ApiError as exc:
            response = json_response({"error": exc.message}, exc.status, exc.headers)
            if request.method not in ("GET", "HEAD"):  # rejected writes: logged, not stored
                log.info(
                    "api.write_rejected",
                    method=request.method,
                    path=request.path,
                    actor=request.get(ACTOR),
                    status=exc.status,
                    error=exc.message,
                )
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
            message = f"{request.path}: {exc.reason.lower()}"
            response = json_response({"error": message}, exc.status, headers)
        except StoreError as exc:
            self.metrics.store_error()
            log.warning("api.store_error", path=request.path, error=str(exc))
            response = json_response({"error": "store unavailable, try again shortly"}, 503)
        except Exception:
            log.exception("api.internal_error", path=request.path)
            response = json_response({"error": "internal error"}, 500)
        if request.path.startswith("/api/v2/"):
            response.headers["Access-Control-Allow-Origin"] = "*"
        if request.method not in ("GET", "HEAD") and response.status < 400:
            request.app[SNAPSHOTS].invalidate()  # an accepted write changes what readers see
        return response

    async def next_boundary(self, now: float) -> float | None:
        """When a maintenance window next starts or ends: the public view changes then."""
        maintenances = await asyncio.to_thread(self.store.list_maintenances, ending_after=now)
        times = [t for m in maintenances for t in (m.start, m.end) if t > now]
        return min(times, default=None)

    async def read_store(
        self, request: web.Request, incidents: IncidentsWanted, maintenances_after: float | None
    ) -> statuspage.Snapshot:
        now = self.clock.now()
        page = self.page
        if not page.url:
            page = replace(page, url=f"{request.scheme}://{request.host}")
        try:
            return await asyncio.to_thread(self._snapshot, page, now, incidents, maintenances_after)
        except StoreError:
            raise
        except Exception as exc:  # a driver error is a store error to the reader
            raise StoreError(f"{type(exc).__name__}: {exc}") from exc

    def _snapshot(
        self,
        page: statuspage.PageInfo,
        now: float,
        wanted: IncidentsWanted,
        maintenances_after: float | None,
    ) -> statuspage.Snapshot:
        store = self.store
        incidents = []
        if wanted in ("unresolved", "page"):
            incidents = store.list_incidents(unresolved_only=True, limit=1000)
        if wanted in ("recent", "page"):
            seen = {incident.id for incident in incidents}
            incidents += [i for i in store.list_incidents(limit=50) if i.id not in seen]
        maintenances = []
        if maintenances_after is not None:
            maintenances = store.list_maintenances(ending_after=maintenances_after)
        return statuspage.Snapshot(page, now, store.list_components(), incidents, maintenances)

    # ------------------------------------------------------------------ operations

    async def metrics_page(self, request: web.Request) -> web.Response:
        body = await asyncio.to_thread(self.metrics.exposition)
        return web.Response(body=body, headers={"Content-Type": self.metrics.content_type})

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def readyz(self, request: web.Request) -> web.Response:
        checks = dict(self.control.readiness())
        ready = all(checks.values())
        return json_response({"ready": ready, "checks": checks}, 200 if ready else 503)

    # ------------------------------------------------------------------ public reads

    def public(
        self,
        build: Callable[[statuspage.Snapshot], Any],
        incidents: IncidentsWanted,
        maintenance_history: float | None = None,
    ) -> Handler:
        """A read-only Statuspage v2 endpoint; maintenances ending after now - history."""

        async def handler(request: web.Request) -> web.Response:
            after = None
            if maintenance_history is not None:
                after = self.clock.now() - maintenance_history
            return json_response(build(await self.read_store(request, incidents, after)))

        return handler


# The page needs no script, image, font, frame or form: only its own <style> and style
# attributes. Everything else is refused, so injected markup could do nothing.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
_HTML_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """On every response, errors included: no type sniffing; HTML also gets the CSP."""
    response.headers["X-Content-Type-Options"] = "nosniff"
    if response.content_type == "text/html":
        response.headers.update(_HTML_HEADERS)


# path, payload, incidents read, maintenances ending after now - seconds (None: not read)
_PUBLIC: list[tuple[str, Callable[[statuspage.Snapshot], Any], IncidentsWanted, float | None]] = [
    ("summary.json", v2.summary, "unresolved", 0.0),
    ("status.json", v2.status, "unresolved", None),
    ("components.json", v2.components, "none", None),
    ("incidents.json", v2.incidents, "recent", None),
    ("incidents/unresolved.json", v2.unresolved_incidents, "unresolved", None),
    # incidents too: a component's status before a window starts is its incidents'
    ("scheduled-maintenances.json", v2.scheduled_maintenances, "page", HISTORY_SECONDS),
    ("scheduled-maintenances/upcoming.json", v2.upcoming_maintenances, "page", 0.0),
    # ended windows too: one is `verifying` while a component it covered is not back
    ("scheduled-maintenances/active.json", v2.active_maintenances, "page", HISTORY_SECONDS),
]


def make_app(
    *,
    store: Store,
    control: Control,
    metrics: Metrics,
    clock: Clock,
    token: str | None,
    tokens: Mapping[str, str] | None = None,
    page_name: str = "Status",
    group_names: Mapping[str, str] | None = None,
    max_body_bytes: int = 64 * 1024,
    page_url: str = "",
    page_id: str = "detector",
    page_language: str = "en",
    snapshot_max_age: float = DEFAULT_MAX_AGE,
) -> web.Application:
    """The one aiohttp application. `tokens` maps names (the audit's actors) to bearer
    tokens; `token` alone is named "default". `page_url` is the public base URL of the status page
    (for Statuspage `url` and incident `shortlink`); empty means the request's own host."""
    page = statuspage.PageInfo(
        id=page_id,
        name=page_name,
        url=page_url.rstrip("/"),
        group_names=dict(statuspage.DEFAULT_GROUP_NAMES if group_names is None else group_names),
    )
    api = _Api(store, control, metrics, clock, page)
    site = Site(store, clock, page, page_language)
    named = dict(tokens or {})
    if token:  # the single-token form: its actor is "default"
        named.setdefault("default", token)
    writes = WriteApi(store, control, clock, named, max_body_bytes)
    app = web.Application(middlewares=[api.errors], client_max_size=max_body_bytes)
    app.on_response_prepare.append(_security_headers)
    # Readers get snapshots (app[SNAPSHOTS]); the daemon invalidates them after each commit.
    snapshots = app[SNAPSHOTS] = Snapshots(
        clock, max_age=snapshot_max_age, boundary=api.next_boundary
    )

    _add_routes(app, api, site, writes, snapshots)
    unsubscribe.add_routes(app, store, clock)
    return app


def _add_routes(
    app: web.Application, api: _Api, site: Site, writes: WriteApi, snapshots: Snapshots
) -> None:
    """Every route but unsubscribe's; pages and public JSON are served from snapshots."""
    page = api.page

    def json_key(request: web.Request) -> Key:
        return (request.path, "" if page.url else f"{request.scheme}://{request.host}")

    def page_key(request: web.Request) -> Key:
        accept = request.headers.get("Accept-Language")
        return (
            *json_key(request),
            choose_language(request.query.get("lang"), accept, site.language),
        )

    public = [
        web.get(f"/api/v2/{path}", snapshots.serve(json_key, api.public(build, incidents, history)))
        for path, build, incidents, history in _PUBLIC
    ]
    app.router.add_routes(
        [
            web.get("/metrics", api.metrics_page),
            web.get("/healthz", api.healthz),
            web.get("/readyz", api.readyz),
            web.get("/", snapshots.serve(page_key, site.index)),
            web.get("/history", site.history),
            web.get("/history.atom", site.feed("atom")),
            web.get("/history.rss", site.feed("rss")),
            web.get("/history/{month}", site.history),
            web.get("/incidents/{id}", site.incident),
            *public,
            web.post("/api/v1/deploys", writes.post_deploy),
            web.post("/api/v1/deploys/{id}/bad", writes.flag_deploy_bad),
            web.post("/api/v1/incidents", writes.post_incident),
            web.post("/api/v1/incidents/{id}/updates", writes.post_incident_update),
            web.post("/api/v1/maintenances", writes.post_maintenance),
            web.delete("/api/v1/maintenances/{id}", writes.delete_maintenance),
            web.post("/-/reload", writes.reload),
        ]
    )
