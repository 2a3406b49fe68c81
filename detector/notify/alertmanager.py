"""`alertmanager`: `POST /api/v2/alerts`. Labels identify the alert (so a team's routes,
silences and inhibitions apply); open incidents are re-sent every `resend_interval` (the
dispatcher calls `resend`), and a resolve sends `endsAt`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from detector.model import Incident
from detector.notify.config import Channel
from detector.notify.http import Context, request
from detector.notify.payload import Audience, component_group, for_audience, incident_object
from detector.notify.text import headline
from detector.store.outbox import Delivery


def incident_alert(incident: Mapping[str, Any], link: str, ends_at: str | None) -> dict[str, Any]:
    latest = incident["updates"][-1] if incident.get("updates") else {}
    alert: dict[str, Any] = {
        "labels": {
            "alertname": "DetectorIncident",
            "incident": incident["id"],
            "rule": incident["rule"],
            "component": incident["component"],
            "group": component_group(incident["component"]),
            "cause": incident["cause"],
        },
        "annotations": {
            "summary": incident["title"],
            "description": latest.get("body", ""),
            "evidence": latest.get("evidence", ""),
            "impact": incident["impact"],
            "status": latest.get("status", ""),
        },
        "startsAt": incident.get("started_at") or incident["opened_at"],
        "generatorURL": link,
    }
    if ends_at is not None:
        alert["endsAt"] = ends_at
    return alert


def episode_alert(
    episode: Mapping[str, Any], event: str, body: Mapping[str, Any], link: str
) -> dict[str, Any]:
    """An early warning; not re-sent, so Alertmanager resolves it after its resolve_timeout."""
    return {
        "labels": {
            "alertname": "DetectorEarlyWarning",
            "rule": episode["rule"],
            "component": episode["component"],
        },
        "annotations": {"summary": headline(event, body)},
        "startsAt": episode["started_at"],
        "generatorURL": link,
    }


class Alertmanager:
    def __init__(self, channel: Channel, context: Context) -> None:
        self.channel = channel
        self.context = context
        self.endpoint = channel.url.rstrip("/") + "/api/v2/alerts"

    def _seen(self, incident: dict[str, Any]) -> dict[str, Any]:
        seen: dict[str, Any] = for_audience({"incident": incident}, self._audience())["incident"]
        return seen

    def _audience(self) -> Audience:
        return self.channel.audience or "oncall"

    def _link(self) -> str:
        return self.channel.link or self.context.link

    async def send(self, delivery: Delivery) -> None:
        incident = for_audience(delivery.body, self._audience()).get("incident")
        if isinstance(incident, dict):
            ends = incident["resolved_at"] if delivery.event == "incident.resolved" else None
            alert = incident_alert(incident, self._link(), ends or None)
        else:
            alert = episode_alert(
                delivery.body["episode"], delivery.event, delivery.body, self._link()
            )
        await self._post([alert])

    async def resend(self, open_incidents: Sequence[Incident]) -> None:
        """Keep open incidents firing (Alertmanager resolves what is not re-sent)."""
        alerts = [
            incident_alert(self._seen(incident_object(i)), self._link(), None)
            for i in open_incidents
            if self.channel.match.matches(
                "incident.updated",
                {
                    "rule": i.rule,
                    "component": i.component,
                    "group": component_group(i.component),
                    "impact": str(i.impact),
                    "cause": i.cause,
                },
            )
        ]
        if alerts:
            await self._post(alerts)

    async def _post(self, alerts: list[dict[str, Any]]) -> None:
        await request(
            self.context.session, "POST", self.endpoint, body=alerts, timeout=self.channel.timeout
        )
