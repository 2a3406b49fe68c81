"""The sandbox app: the platform middleware (latency, feature faults, auth), the panel,
routing, and serving it (`detector sandbox`)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import BasicAuth, web

from detector.clock import Clock, SystemClock
from detector.sandbox.carriers import (
    cancel_parcel,
    create_parcel,
    get_label,
    get_label_pdf,
    shipping_methods,
    tracking_feed,
    user,
)
from detector.sandbox.faults import add_fault, clear_faults, list_faults, list_parcels
from detector.sandbox.shops import delete_order, get_order, integrations, upsert_orders
from detector.sandbox.state import FEATURES, SANDBOX, Sandbox, _error


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


# ---------------------------------------------------------------------------- panel, app


async def panel(request: web.Request) -> web.Response:
    html = (
        "<!doctype html><html><head><title>Sendcloud sandbox panel</title></head><body>"
        "<h1>Sendcloud</h1><p>Shipping made easy.</p></body></html>"
    )
    return web.Response(text=html, content_type="text/html")


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
