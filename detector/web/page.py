"""The public status page: server-rendered HTML5, no JavaScript, every value escaped.

Colour is never the only signal: each status also has a text label. Times are shown in UTC.
The page reloads itself every 60 s with a meta refresh, which needs no script.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from html import escape

from detector.model import ComponentStatus, Incident, IncidentStatus, Maintenance
from detector.timeutil import in_range
from detector.web.statuspage import (
    Snapshot,
    group_name,
    group_records,
    indicator,
    maintenance_status,
    public_id,
    status_json,
    worst,
)

STATUS_COLOURS = {
    ComponentStatus.OPERATIONAL: "#2e7d32",
    ComponentStatus.DEGRADED_PERFORMANCE: "#f9a825",
    ComponentStatus.PARTIAL_OUTAGE: "#ef6c00",
    ComponentStatus.MAJOR_OUTAGE: "#c62828",
    ComponentStatus.UNDER_MAINTENANCE: "#1565c0",
}
INDICATOR_COLOURS = {
    "none": STATUS_COLOURS[ComponentStatus.OPERATIONAL],
    "minor": STATUS_COLOURS[ComponentStatus.DEGRADED_PERFORMANCE],
    "major": STATUS_COLOURS[ComponentStatus.PARTIAL_OUTAGE],
    "critical": STATUS_COLOURS[ComponentStatus.MAJOR_OUTAGE],
    "maintenance": STATUS_COLOURS[ComponentStatus.UNDER_MAINTENANCE],
}
HISTORY_SECONDS = 7 * 86400.0

_STYLE = """
body{font-family:system-ui,sans-serif;max-width:52rem;margin:0 auto;padding:1rem;color:#222}
h1{font-size:1.6rem}h2{font-size:1.2rem;margin-top:2rem}
.banner{color:#fff;padding:.8rem 1rem;border-radius:.3rem;font-weight:600}
.group{border:1px solid #ddd;border-radius:.3rem;margin:.8rem 0;padding:0 1rem}
.group>h3{display:flex;justify-content:space-between;font-size:1rem}
ul.components{list-style:none;padding:0;margin:0 0 .6rem}
ul.components li{display:flex;justify-content:space-between;padding:.35rem 0;
  border-top:1px solid #eee}
.status{font-weight:600}.status::before{content:"\\25CF\\00a0"}
.banner.minor{color:#222}
.incident,.maintenance{border-left:.3rem solid #999;padding:.2rem 1rem;margin:1rem 0}
ol.timeline{list-style:none;padding:0}ol.timeline li{margin:.5rem 0}
time{color:#555;font-size:.9rem}.body{white-space:pre-wrap;margin:.2rem 0}
footer{margin-top:2rem;color:#666;font-size:.85rem}
"""
_STATUS_STYLE = "".join(
    f".status-{status.value}::before{{color:{colour}}}" for status, colour in STATUS_COLOURS.items()
)


def render_status_page(
    snapshot: Snapshot,
    *,
    history_seconds: float = HISTORY_SECONDS,
    history_limit: int = 20,
    refresh_seconds: int = 60,
) -> str:
    """The whole page. `snapshot.incidents` holds the unresolved ones and recent history."""
    title = escape(snapshot.page.name)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f'<meta http-equiv="refresh" content="{int(refresh_seconds)}">',
        f"<title>{title}</title><style>{_STYLE}{_STATUS_STYLE}</style></head><body>",
        f"<header><h1>{title}</h1>{_banner(snapshot)}</header><main>",
        _maintenance_section(snapshot),
        _open_incidents_section(snapshot),
        _components_section(snapshot),
        _history_section(snapshot, history_seconds, history_limit),
        "</main>",
        _footer(snapshot),
        "</body></html>",
    ]
    return "\n".join(part for part in parts if part)


# ---------------------------------------------------------------------------- pieces


def _utc(epoch: float) -> str:
    if not in_range(epoch):  # a bad stored time shows as unknown, not as a 500 for everyone
        return "<time>unknown time</time>"
    moment = datetime.fromtimestamp(epoch, tz=UTC)
    machine = moment.isoformat(timespec="seconds").replace("+00:00", "Z")
    return f'<time datetime="{machine}">{moment:%Y-%m-%d %H:%M} UTC</time>'


def _section(anchor: str, heading: str, body: str) -> str:
    return f'<section aria-labelledby="{anchor}"><h2 id="{anchor}">{heading}</h2>{body}</section>'


def _status(status: ComponentStatus) -> str:
    """The label in dark text after a dot in the status colour (legible on white)."""
    return f'<span class="status status-{status.value}">{escape(status.words.capitalize())}</span>'


def _banner(snapshot: Snapshot) -> str:
    value = indicator(snapshot)
    text = escape(status_json(snapshot)["description"])
    style = f"background:{INDICATOR_COLOURS[value]}"
    return f'<p class="banner {value}" role="status" style="{style}">{text}</p>'


def _component_names(snapshot: Snapshot) -> dict[str, str]:
    return {record.id: record.name for record in snapshot.components}


def _components_section(snapshot: Snapshot) -> str:
    parts = []
    for group, members in group_records(snapshot.components).items():
        name = escape(group_name(snapshot.page, group))
        overall = worst([member.status for member in members])
        parts.append(
            f'<section class="group" id="{escape(public_id(group))}">'
            f'<h3><span>{name}</span>{_status(overall)}</h3><ul class="components">'
        )
        for member in members:
            description = escape(member.description, quote=True)
            parts.append(
                f'<li id="{escape(public_id(member.id))}" title="{description}">'
                f"<span>{escape(member.name)}</span>{_status(member.status)}</li>"
            )
        parts.append("</ul></section>")
    if not snapshot.components:
        parts.append("<p>No components configured.</p>")
    return _section("components", "Components", "".join(parts))


def _timeline(incident: Incident) -> str:
    items = []
    public = [update for update in incident.updates if update.public]  # never the evidence
    for update in sorted(public, key=lambda u: u.at, reverse=True):
        items.append(
            f"<li><strong>{escape(update.status.value.capitalize())}</strong> "
            f"{_utc(update.at)} &middot; {_status(update.component_status)}"
            f'<p class="body">{escape(update.body)}</p></li>'
        )
    return f'<ol class="timeline" reversed>{"".join(items)}</ol>'


def _incident(incident: Incident, names: dict[str, str], *, timeline: bool) -> str:
    colour = STATUS_COLOURS[incident.impact]
    component = escape(names.get(incident.component, incident.component))
    state = escape(incident.status.value.capitalize())
    head = (
        f'<article class="incident" id="incident-{escape(incident.id, quote=True)}" '
        f'style="border-color:{colour}"><h3>{escape(incident.title)}</h3>'
        f"<p>{state} &middot; affects {component} &middot; opened {_utc(incident.opened_at)}"
    )
    if incident.resolved_at is not None:
        head += f" &middot; resolved {_utc(incident.resolved_at)}"
    head += "</p>"
    return head + (_timeline(incident) if timeline else "") + "</article>"


def _open_incidents_section(snapshot: Snapshot) -> str:
    names = _component_names(snapshot)
    open_ones = [i for i in snapshot.incidents if i.status is not IncidentStatus.RESOLVED]
    if not open_ones:
        return ""
    body = "".join(_incident(i, names, timeline=True) for i in open_ones)
    return _section("open-incidents", "Open incidents", body)


def _recent(incidents: Iterable[Incident], since: float, limit: int) -> list[Incident]:
    resolved = [i for i in incidents if i.resolved_at is not None and i.resolved_at >= since]
    resolved.sort(key=lambda i: i.resolved_at or 0.0, reverse=True)
    return resolved[:limit]


def _history_section(snapshot: Snapshot, history_seconds: float, limit: int) -> str:
    names = _component_names(snapshot)
    recent = _recent(snapshot.incidents, snapshot.now - history_seconds, limit)
    days = max(1, round(history_seconds / 86400))
    body = "".join(_incident(i, names, timeline=True) for i in recent)
    return _section(
        "history", f"Past {days} days", body or f"<p>No incidents in the past {days} days.</p>"
    )


def _maintenance(maintenance: Maintenance, snapshot: Snapshot, names: dict[str, str]) -> str:
    state = maintenance_status(maintenance, snapshot.now).replace("_", " ").capitalize()
    affected = ", ".join(escape(names.get(c, c)) for c in maintenance.components)
    colour = STATUS_COLOURS[ComponentStatus.UNDER_MAINTENANCE]
    return (
        f'<article class="maintenance" id="maintenance-{escape(maintenance.id, quote=True)}" '
        f'style="border-color:{colour}"><h3>{escape(maintenance.title or "Maintenance")}</h3>'
        f"<p>{escape(state)} &middot; {_utc(maintenance.start)} to {_utc(maintenance.end)}</p>"
        f"<p>Affects: {affected}</p></article>"
    )


def _maintenance_section(snapshot: Snapshot) -> str:
    current: Sequence[Maintenance] = [m for m in snapshot.maintenances if m.end > snapshot.now]
    if not current:
        return ""
    names = _component_names(snapshot)
    body = "".join(_maintenance(m, snapshot, names) for m in current)
    return _section("maintenance", "Scheduled maintenance", body)


def _footer(snapshot: Snapshot) -> str:
    return (
        f"<footer><p>Updated {_utc(snapshot.now)}. Machine-readable: "
        '<a href="/api/v2/summary.json">summary.json</a> (Statuspage API v2).</p></footer>'
    )
