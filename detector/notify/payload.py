"""What a notification says: the outbox events a change produces, and the webhook contract body.

Pure functions of detector's values, no I/O: the store calls `incident_events` inside the
transaction that commits the change, so the event and the change land together or not at all.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from detector.model import (
    ComponentStatus,
    Decision,
    Episode,
    Incident,
    IncidentOpened,
    IncidentResolved,
    IncidentUpdate,
    IncidentUpdated,
)
from detector.replay import incident_to_dict
from detector.timeutil import format_time, in_range

EventName = Literal[
    "incident.opened",
    "incident.updated",
    "incident.resolved",
    "component.updated",
    "maintenance.started",
    "maintenance.ended",
    "episode.started",
]
EVENT_NAMES: tuple[EventName, ...] = get_args(EventName)  # the Literal is the one list
Audience = Literal["oncall", "public"]


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    """One change to tell channels about. `subject` orders deliveries (an incident id, a
    component id); `dedup` makes writing it twice a no-op; `facts` is what filters match."""

    event: EventName
    subject: str
    at: float
    dedup: str
    facts: Mapping[str, Any]
    body: Mapping[str, Any]
    channel: str = ""  # only this channel (episode.started honours each channel's notify_after)
    extra: Mapping[str, Any] = field(default_factory=dict)


def _time(moment: float | None) -> str | None:
    return format_time(moment) if moment is not None and in_range(moment) else None


def incident_object(incident: Incident) -> dict[str, Any]:
    """The replay incident object plus what on-call needs. Never raises: it runs inside the
    commit of the change, so a time no reader can format is written as null."""
    data = incident_to_dict(incident, time=_time)
    data["status"] = str(incident.status)
    data["component_status"] = str(incident.component_status)
    data["markets"] = list(incident.markets)
    data["started_at"] = _time(incident.started_at)
    for out, update in zip(data["updates"], incident.updates, strict=True):
        out["evidence"] = update.evidence
        out["public"] = update.public
    return data


def component_group(component: str) -> str:
    """`carriers/dhl` -> `carriers`: what a channel's `group` filter and labels name."""
    return component.partition("/")[0]


def _facts(
    rule: str, component: str, status: str, cause: str, public: bool, **more: Any
) -> dict[str, Any]:
    """What channel filters match on; every event has these keys (empty where not known)."""
    return {
        "rule": rule,
        "component": component,
        "group": component_group(component),
        "status": status,
        "cause": cause,
        "public": public,
        **more,
    }


def _incident_event(
    event: EventName, incident: Incident, update: IncidentUpdate | None
) -> OutboxEvent:
    at = incident.opened_at if update is None else update.at
    status = incident.component_status if update is None else update.component_status
    incident_status = incident.status if update is None else update.status
    tail = "" if update is None else f":{at!r}:{update.status}:{update.component_status}"
    return OutboxEvent(
        event=event,
        subject=incident.id,
        at=at,
        dedup=f"{event}:{incident.id}{tail}",
        facts=_facts(
            incident.rule,
            incident.component,
            str(status),
            incident.cause,
            True if update is None else update.public,
            impact=str(incident.impact),
            incident_status=str(incident_status),
        ),
        body={"incident": incident_object(incident)},
    )


def incident_events(decisions: Sequence[Decision]) -> list[OutboxEvent]:
    events: list[OutboxEvent] = []
    for decision in decisions:
        if isinstance(decision, IncidentOpened):
            events.append(_incident_event("incident.opened", decision.incident, None))
        elif isinstance(decision, IncidentResolved):
            events.append(_incident_event("incident.resolved", decision.incident, decision.update))
        elif isinstance(decision, IncidentUpdated):
            events.append(_incident_event("incident.updated", decision.incident, decision.update))
    return events


def component_event(
    component: str, name: str, old: ComponentStatus, new: ComponentStatus, now: float
) -> OutboxEvent:
    """A component's status changed; entering or leaving maintenance says so by name."""
    event: EventName = "component.updated"
    if new == ComponentStatus.UNDER_MAINTENANCE:
        event = "maintenance.started"
    elif old == ComponentStatus.UNDER_MAINTENANCE:
        event = "maintenance.ended"
    return OutboxEvent(
        event=event,
        subject=component,
        at=now,
        dedup=f"{event}:{component}:{now!r}:{new}",
        facts=_facts("", component, str(new), "", True),
        body={
            "incident": None,
            "component": {
                "id": component,
                "name": name,
                "status": str(new),
                "previous_status": str(old),
            },
        },
    )


def episode_event(episode: Episode, channel: str, now: float) -> OutboxEvent:
    """Early warning for one on-call channel: the failure has lasted its `notify_after`."""
    key = f"{episode.rule}:{episode.component}:{episode.started_at!r}"
    return OutboxEvent(
        event="episode.started",
        subject=f"episode:{episode.rule}:{episode.component}",
        at=now,
        dedup=f"episode.started:{channel}:{key}",
        facts=_facts(episode.rule, episode.component, "", "", False),
        body={
            "incident": None,
            "episode": {
                "rule": episode.rule,
                "component": episode.component,
                "started_at": _time(episode.started_at),
                "failing_for_s": round(now - episode.started_at, 3),
            },
        },
        channel=channel,
    )


def for_audience(body: Mapping[str, Any], audience: Audience) -> dict[str, Any]:
    """The stored body as one audience may see it: `public` loses evidence and the updates
    recorded for on-call only."""
    out = dict(body)
    incident = out.get("incident")
    if audience == "public" and isinstance(incident, dict):
        updates = [
            {k: v for k, v in u.items() if k != "evidence"}
            for u in incident.get("updates", [])
            if u.get("public", True)
        ]
        out["incident"] = {**incident, "updates": updates}
    return out


def contract_body(
    event: str, delivery: str, at: float, body: Mapping[str, Any], audience: Audience
) -> dict[str, Any]:
    """The webhook contract (DESIGN "Notifications"): event, delivery, at, incident, + extras."""
    return {"event": event, "delivery": delivery, "at": _time(at)} | for_audience(body, audience)


def latest_update(body: Mapping[str, Any], audience: Audience) -> dict[str, Any] | None:
    incident = for_audience(body, audience).get("incident")
    if not isinstance(incident, dict) or not incident.get("updates"):
        return None
    latest: dict[str, Any] = incident["updates"][-1]
    return latest
