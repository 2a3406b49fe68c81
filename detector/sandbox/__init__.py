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

from detector.sandbox.app import Handler, make_app, panel, run_sandbox
from detector.sandbox.carriers import (
    cancel_parcel,
    create_parcel,
    get_label,
    get_label_pdf,
    shipping_methods,
    tracking_feed,
    user,
)
from detector.sandbox.faults import (
    FaultSpec,
    add_fault,
    clear_faults,
    list_faults,
    list_parcels,
)
from detector.sandbox.shops import delete_order, get_order, integrations, upsert_orders
from detector.sandbox.state import (
    CARRIERS,
    FEATURES,
    INTEGRATIONS,
    SANDBOX,
    SHIPPING_METHODS,
    SHOPS,
    TRACKING_STATUSES,
    Fault,
    Order,
    Parcel,
    Sandbox,
)

__all__ = [
    "CARRIERS",
    "FEATURES",
    "INTEGRATIONS",
    "SANDBOX",
    "SHIPPING_METHODS",
    "SHOPS",
    "TRACKING_STATUSES",
    "Fault",
    "FaultSpec",
    "Handler",
    "Order",
    "Parcel",
    "Sandbox",
    "add_fault",
    "cancel_parcel",
    "clear_faults",
    "create_parcel",
    "delete_order",
    "get_label",
    "get_label_pdf",
    "get_order",
    "integrations",
    "list_faults",
    "list_parcels",
    "make_app",
    "panel",
    "run_sandbox",
    "shipping_methods",
    "tracking_feed",
    "upsert_orders",
    "user",
]
