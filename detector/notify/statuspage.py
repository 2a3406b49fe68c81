"""`statuspage`: drives a hosted Atlassian Statuspage page through its manage API v1.

`POST /pages/{page_id}/incidents` creates the incident (its id is kept in the store, and
detector's incident id goes in the incident's `metadata`: a create whose id was never saved
is found again through `GET /pages/{page_id}/incidents/unresolved` instead of made twice),
`PATCH /pages/{page_id}/incidents/{id}` posts each public update with its status and body,
`PATCH /pages/{page_id}/components/{id}` sets component statuses through the `components:`
map. Auth is `Authorization: OAuth <key>`; a token may make 1 request/s, so calls are spaced
by `rate` and a 420/429 waits for `Retry-After`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any, Protocol

import orjson

from detector.notify.config import Channel
from detector.notify.http import Context, DeliveryError, request
from detector.store.outbox import Delivery


class Refs(Protocol):
    def channel_ref(self, channel: str, key: str) -> str | None: ...

    def set_channel_ref(self, channel: str, key: str, ref: str) -> None: ...


class Statuspage:
    def __init__(self, channel: Channel, context: Context, store: Refs) -> None:
        self.channel = channel
        self.context = context
        self.store = store
        self.headers = {"Authorization": f"OAuth {channel.secret()}"}
        self.base = f"{channel.url.rstrip('/')}/pages/{channel.page_id}"
        self._spacing = 1.0 / channel.rate
        self._next_call = 0.0
        self._lock = asyncio.Lock()  # one call at a time, spaced: the token's rate limit

    async def _call(self, method: str, path: str, body: Mapping[str, Any] | None) -> Any:
        async with self._lock:
            wait = self._next_call - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            try:
                _, answer = await request(
                    self.context.session,
                    method,
                    self.base + path,
                    body=body,
                    headers=self.headers,
                    timeout=self.channel.timeout,
                )
            finally:
                self._next_call = time.monotonic() + self._spacing
        return orjson.loads(answer) if answer else {}

    async def send(self, delivery: Delivery) -> None:
        incident = delivery.body.get("incident")
        if isinstance(incident, dict):
            await self._incident(delivery.event, incident)
            return
        component = delivery.body["component"]
        target = self.channel.components.get(component["id"])
        if target:
            body = {"component": {"status": component["status"]}}
            await self._call("PATCH", f"/components/{target}", body)

    async def _incident(self, event: str, incident: Mapping[str, Any]) -> None:
        latest = incident["updates"][-1] if incident.get("updates") else {}
        status = "resolved" if event == "incident.resolved" else latest.get("status", "")
        component_status = latest.get("component_status", incident["component_status"])
        fields: dict[str, Any] = {
            "status": status or incident["status"],
            "body": latest.get("body", ""),
        }
        target = self.channel.components.get(incident["component"])
        if target:
            fields["component_ids"] = [target]
            fields["components"] = {target: component_status}
        ref = await asyncio.to_thread(self.store.channel_ref, self.channel.name, incident["id"])
        if ref is None:  # a create whose id was never saved (the process died) is found again
            ref = await self._created_before(incident["id"])
            if ref is not None:
                await self._remember(incident["id"], ref)
        if ref is not None:
            await self._call("PATCH", f"/incidents/{ref}", {"incident": fields})
            return
        fields |= {
            "name": incident["title"],
            "deliver_notifications": True,
            "metadata": {"detector": {"incident_id": incident["id"]}},
        }
        created = await self._call("POST", "/incidents", {"incident": fields})
        if not isinstance(created, dict) or not created.get("id"):
            raise DeliveryError("Statuspage answered without an incident id")
        await self._remember(incident["id"], str(created["id"]))

    async def _created_before(self, incident_id: str) -> str | None:
        """The page's unresolved incident that carries this incident's id in its metadata."""
        found = await self._call("GET", "/incidents/unresolved", None)
        for item in found if isinstance(found, list) else []:
            metadata = item.get("metadata") if isinstance(item, dict) else None
            mine = metadata.get("detector") if isinstance(metadata, dict) else None
            if isinstance(mine, dict) and mine.get("incident_id") == incident_id and item.get("id"):
                return str(item["id"])
        return None

    async def _remember(self, incident_id: str, ref: str) -> None:
        await asyncio.to_thread(self.store.set_channel_ref, self.channel.name, incident_id, ref)
