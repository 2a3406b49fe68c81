"""`pagerduty`: Events API v2 — trigger on open and update, resolve on resolve, the incident id
as `dedup_key`, evidence in `custom_details` (on-call audience)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from detector.notify.config import Channel
from detector.notify.http import Context, request
from detector.notify.payload import component_group, for_audience
from detector.notify.text import headline
from detector.store.outbox import Delivery

_SEVERITY = {
    "major_outage": "critical",
    "partial_outage": "error",
    "degraded_performance": "warning",
}


def pagerduty_event(
    routing_key: str, event: str, body: Mapping[str, Any], link: str
) -> dict[str, Any]:
    incident = body.get("incident")
    if isinstance(incident, dict):
        latest = incident["updates"][-1] if incident.get("updates") else {}
        dedup_key = incident["id"]
        source, component = incident["component"], incident["component"]
        severity = _SEVERITY.get(incident["impact"], "info")
        details = {
            "incident": incident["id"],
            "rule": incident["rule"],
            "status": latest.get("status", ""),
            "body": latest.get("body", ""),
            "evidence": latest.get("evidence", ""),
            "cause": incident["cause"],
            "deploy": incident["deploy"],
        }
    else:
        episode = body["episode"]
        dedup_key = f"episode:{episode['rule']}:{episode['component']}:{episode['started_at']}"
        source, component, severity, details = (
            episode["component"],
            episode["component"],
            ("warning"),
            dict(episode),
        )
    message: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": "resolve" if event == "incident.resolved" else "trigger",
        "dedup_key": dedup_key,
    }
    if message["event_action"] == "trigger":
        message["payload"] = {
            "summary": headline(event, body)[:1024],
            "source": source,
            "severity": severity,
            "component": component,
            "group": component_group(component),
            "class": event,
            "custom_details": details,
        }
        if link:
            message["links"] = [{"href": link, "text": "Status page"}]
    return message


class PagerDuty:
    def __init__(self, channel: Channel, context: Context) -> None:
        self.channel = channel
        self.context = context
        self.routing_key = channel.secret()

    async def send(self, delivery: Delivery) -> None:
        link = self.channel.link or self.context.link
        body = for_audience(delivery.body, self.channel.audience or "oncall")
        await request(
            self.context.session,
            "POST",
            self.channel.url,
            body=pagerduty_event(self.routing_key, delivery.event, body, link),
            timeout=self.channel.timeout,
        )
