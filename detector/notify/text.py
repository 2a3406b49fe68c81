"""Short human sentences about an outbox event, for Slack, PagerDuty summaries and email."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from detector.model import ComponentStatus
from detector.notify.payload import Audience, for_audience


def headline(event: str, body: Mapping[str, Any]) -> str:
    """One line: what happened, in public words (no rule names for incidents and components)."""
    incident = body.get("incident")
    if isinstance(incident, dict):
        status = incident["updates"][-1]["status"] if incident.get("updates") else "investigating"
        if event == "incident.resolved":
            status = "resolved"
        return f"{incident['title']} ({status})"
    component = body.get("component")
    if isinstance(component, dict):
        words = ComponentStatus(component["status"]).words
        if event == "maintenance.started":
            return f"{component['name']}: maintenance started"
        if event == "maintenance.ended":
            return f"{component['name']}: maintenance ended, now {words}"
        return f"{component['name']} is now {words}"
    episode = body.get("episode", {})
    minutes = round(float(episode.get("failing_for_s", 0)) / 60)
    return (
        f"Early warning: {episode.get('rule')} failing on {episode.get('component')} for {minutes}m"
    )


def detail(body: Mapping[str, Any], audience: Audience) -> str:
    """The latest update's public body, and for on-call its evidence."""
    incident = for_audience(body, audience).get("incident")
    if not isinstance(incident, dict) or not incident.get("updates"):
        return ""
    latest = incident["updates"][-1]
    lines = [latest["body"]]
    if audience == "oncall" and latest.get("evidence"):
        lines.append(f"Evidence: {latest['evidence']}")
    return "\n".join(lines)
