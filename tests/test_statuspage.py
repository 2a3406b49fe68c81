"""Statuspage v2 JSON shaping and the HTML status page: pure functions, no I/O."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import pytest
from factories import T0, make_component, make_incident

from detector.model import (
    ComponentStatus,
    Incident,
    IncidentStatus,
    IncidentUpdate,
    Maintenance,
)
from detector.store.base import ComponentRecord
from detector.web import statuspage, v2
from detector.web.page import render_status_page
from detector.web.statuspage import PageInfo, Snapshot

NOW = T0  # 2026-11-28T10:00:00Z
OK = ComponentStatus.OPERATIONAL
DEGRADED = ComponentStatus.DEGRADED_PERFORMANCE
PARTIAL = ComponentStatus.PARTIAL_OUTAGE
MAJOR = ComponentStatus.MAJOR_OUTAGE
MAINTENANCE = ComponentStatus.UNDER_MAINTENANCE

# The keys Atlassian Statuspage's public API v2 returns.
COMPONENT_KEYS = {
    "id", "name", "status", "created_at", "updated_at", "position", "description", "showcase",
    "start_date", "group_id", "page_id", "group", "only_show_if_degraded",
}  # fmt: skip
INCIDENT_KEYS = {
    "id", "name", "status", "created_at", "updated_at", "monitoring_at", "resolved_at",
    "impact", "shortlink", "started_at", "page_id", "incident_updates", "components",
    "postmortem_body", "postmortem_body_last_updated_at",
}  # fmt: skip
UPDATE_KEYS = {
    "id", "status", "body", "incident_id", "created_at", "updated_at", "display_at",
    "affected_components", "deliver_notifications", "custom_tweet", "tweet_id",
}  # fmt: skip
PAGE_KEYS = {"id", "name", "url", "time_zone", "updated_at"}
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


def component(cid: str, status: ComponentStatus = OK, position: int = 0) -> ComponentRecord:
    description = f"{cid.partition('/')[2]} description"
    return make_component(
        cid, position, status=status, updated_at=NOW - 60, description=description
    )


def incident(iid: str = "inc-1", *, opened_at: float = NOW - 3600, **changes: Any) -> Incident:
    """An incident an hour old, for no market in particular."""
    return make_incident(iid, opened_at, markets=(), **changes)


COMPONENTS = (
    component("sendcloud/api", position=0),
    component("sendcloud/panel", position=1),
    component("carriers/dhl", MAJOR, position=2),
    component("carriers/ups", position=3),
    component("integrations/shopify", DEGRADED, position=4),
)


def snapshot(**kwargs: Any) -> Snapshot:
    values: dict[str, Any] = {"page": PageInfo(url="https://status.example.com"), "now": NOW}
    values.update(kwargs)
    return Snapshot(**values)


# ---------------------------------------------------------------------------- components


def test_public_id_is_url_safe() -> None:
    assert statuspage.public_id("carriers/dhl") == "carriers.dhl"
    assert statuspage.public_id("carriers/dhl-express") == "carriers.dhl-express"
    assert statuspage.public_id("carriers/d h?l") == "carriers.d%20h%3Fl"


def test_components_have_statuspage_fields_and_groups() -> None:
    listed = statuspage.components_list(snapshot(components=COMPONENTS))
    by_id = {item["id"]: item for item in listed}
    assert [item["id"] for item in listed] == [
        "sendcloud", "sendcloud.api", "sendcloud.panel",
        "carriers", "carriers.dhl", "carriers.ups",
        "integrations", "integrations.shopify",
    ]  # fmt: skip
    for item in listed:
        expected = COMPONENT_KEYS | ({"components"} if item["group"] else set())
        assert set(item) == expected
        assert item["page_id"] == "detector"
        assert RFC3339.match(item["updated_at"])
    assert by_id["carriers"]["name"] == "Carriers"
    assert by_id["carriers"]["components"] == ["carriers.dhl", "carriers.ups"]
    assert by_id["carriers"]["status"] == "major_outage"  # its worst member
    assert by_id["carriers"]["group_id"] is None
    assert by_id["sendcloud"]["name"] == "Sendcloud platform"
    assert by_id["integrations"]["status"] == "degraded_performance"
    dhl = by_id["carriers.dhl"]
    assert (dhl["name"], dhl["status"], dhl["group_id"], dhl["group"]) == (
        "DHL", "major_outage", "carriers", False,
    )  # fmt: skip
    assert dhl["description"] == "dhl description"
    assert dhl["position"] == 2


def test_group_names_come_from_the_mapping() -> None:
    page = PageInfo(group_names={"carriers": "Shipping carriers"})
    listed = statuspage.components_list(snapshot(page=page, components=COMPONENTS))
    names = {item["id"]: item["name"] for item in listed if item["group"]}
    assert names == {"sendcloud": "Sendcloud", "carriers": "Shipping carriers",
                     "integrations": "Integrations"}  # fmt: skip


# ---------------------------------------------------------------------------- status


@pytest.mark.parametrize(
    ("statuses", "indicator", "description"),
    [
        ([OK, OK], "none", "All Systems Operational"),
        ([OK, DEGRADED], "minor", "Minor Service Outage"),
        ([DEGRADED, PARTIAL], "major", "Partial System Outage"),
        ([PARTIAL, MAJOR, OK], "critical", "Major Service Outage"),
        ([OK, MAINTENANCE], "maintenance", "Service Under Maintenance"),
        ([MAINTENANCE, DEGRADED], "minor", "Minor Service Outage"),
        ([], "none", "All Systems Operational"),
    ],
)
def test_status_indicator(
    statuses: list[ComponentStatus], indicator: str, description: str
) -> None:
    records = [component(f"carriers/c{n}", status) for n, status in enumerate(statuses)]
    assert v2.status_json(snapshot(components=records)) == {
        "indicator": indicator,
        "description": description,
    }


def test_unresolved_incident_raises_the_indicator() -> None:
    current = snapshot(components=[component("carriers/dhl")], incidents=[incident(impact=PARTIAL)])
    assert v2.status_json(current)["indicator"] == "major"
    resolved = incident(status=IncidentStatus.RESOLVED)
    settled = snapshot(components=[component("carriers/dhl")], incidents=[resolved])
    assert v2.status_json(settled)["indicator"] == "none"


# ---------------------------------------------------------------------------- incidents


@pytest.mark.parametrize(
    ("impact", "expected"),
    [(MAJOR, "critical"), (PARTIAL, "major"), (DEGRADED, "minor"), (OK, "none")],
)
def test_incident_impact(impact: ComponentStatus, expected: str) -> None:
    shaped = statuspage.incident_json(incident(impact=impact), snapshot(components=COMPONENTS))
    assert shaped["impact"] == expected


def test_incident_fields_and_updates_newest_first() -> None:
    item = incident(status=IncidentStatus.RESOLVED)
    shaped = statuspage.incident_json(item, snapshot(components=COMPONENTS))
    assert set(shaped) == INCIDENT_KEYS
    assert shaped["id"] == "inc-1"
    assert shaped["name"] == "DHL: label creation failing (DE)"
    assert shaped["status"] == "resolved"
    assert shaped["created_at"] == shaped["started_at"] == "2026-11-28T09:00:00Z"
    assert shaped["monitoring_at"] == "2026-11-28T09:10:00Z"
    assert shaped["resolved_at"] == shaped["updated_at"] == "2026-11-28T09:20:00Z"
    assert shaped["shortlink"] == "https://status.example.com/#incident-inc-1"
    assert [c["id"] for c in shaped["components"]] == ["carriers.dhl"]
    updates = shaped["incident_updates"]
    assert [u["status"] for u in updates] == ["resolved", "monitoring", "investigating"]
    assert [u["id"] for u in updates] == ["inc-1-3", "inc-1-2", "inc-1-1"]
    for update in updates:
        assert set(update) == UPDATE_KEYS
        assert update["incident_id"] == "inc-1"
    first = updates[-1]["affected_components"][0]
    assert first == {"code": "carriers.dhl", "name": "DHL", "old_status": "operational",
                     "new_status": "major_outage"}  # fmt: skip
    assert updates[-2]["affected_components"][0]["old_status"] == "major_outage"


def test_open_incident_has_no_monitoring_or_resolved_time() -> None:
    shaped = statuspage.incident_json(incident(), snapshot())
    assert shaped["monitoring_at"] is None
    assert shaped["resolved_at"] is None
    assert shaped["components"][0]["id"] == "carriers.dhl"  # a stand-in for an unknown one


# ---------------------------------------------------------------------------- maintenance


@pytest.mark.parametrize(
    ("start", "end", "status"),
    [(NOW + 60, NOW + 120, "scheduled"), (NOW, NOW + 60, "in_progress"),
     (NOW - 120, NOW - 60, "completed")],
)  # fmt: skip
def test_maintenance_status(start: float, end: float, status: str) -> None:
    window = Maintenance(start, end, ("carriers/dhl",), "DHL upgrade", "m-1")
    shaped = statuspage.maintenance_json(window, snapshot(components=COMPONENTS))
    assert shaped["status"] == status
    assert set(shaped) == INCIDENT_KEYS | {"scheduled_for", "scheduled_until"}
    assert shaped["impact"] == "maintenance"
    assert shaped["resolved_at"] == (shaped["scheduled_until"] if status == "completed" else None)
    newest = shaped["incident_updates"][0]
    assert newest["status"] == status
    expected = "under_maintenance" if status == "in_progress" else "operational"
    assert newest["affected_components"][0]["new_status"] == expected


# ---------------------------------------------------------------------------- endpoints


def test_endpoint_payloads() -> None:
    windows = [
        Maintenance(NOW - 7200, NOW - 3600, ("carriers/ups",), "old", "m-old"),
        Maintenance(NOW + 3600, NOW + 7200, ("carriers/ups",), "next", "m-next"),
    ]
    incidents = [incident("inc-2"), incident("inc-1", status=IncidentStatus.RESOLVED)]
    current = snapshot(components=COMPONENTS, incidents=incidents, maintenances=windows)
    summary = v2.summary(current)
    assert set(summary) == {"page", "components", "incidents", "scheduled_maintenances", "status"}
    assert set(summary["page"]) == PAGE_KEYS
    assert summary["page"]["time_zone"] == "Etc/UTC"
    assert [i["id"] for i in summary["incidents"]] == ["inc-2"]
    assert [m["id"] for m in summary["scheduled_maintenances"]] == ["m-next"]
    assert set(v2.status(current)) == {"page", "status"}
    assert set(v2.components(current)) == {"page", "components"}
    assert [i["id"] for i in v2.incidents(current)["incidents"]] == ["inc-2", "inc-1"]
    assert [i["id"] for i in v2.incidents(current, limit=1)["incidents"]] == ["inc-2"]
    unresolved = v2.unresolved_incidents(current)["incidents"]
    assert [i["id"] for i in unresolved] == ["inc-2"]
    listed = v2.scheduled_maintenances(current)["scheduled_maintenances"]
    assert [(m["id"], m["status"]) for m in listed] == [
        ("m-old", "completed"),
        ("m-next", "scheduled"),
    ]


# ---------------------------------------------------------------------------- HTML page


def test_page_shows_groups_components_and_labelled_colours() -> None:
    html = render_status_page(snapshot(components=COMPONENTS))
    assert html.startswith("<!DOCTYPE html>")
    assert "<script" not in html
    for text in ("Sendcloud platform", "Carriers", "Integrations", "DHL", "SHOPIFY"):
        assert text in html
    assert re.search(r'id="carriers.dhl".*?"status status-major_outage">Major outage<', html)
    assert re.search(r'id="carriers.ups".*?"status status-operational">Operational<', html)
    assert re.search(
        r'id="integrations.shopify".*?"status status-degraded_performance">Degraded performance<',
        html,
    )
    colours = {
        "operational": "#2e7d32", "degraded_performance": "#f9a825",
        "partial_outage": "#ef6c00", "major_outage": "#c62828", "under_maintenance": "#1565c0",
    }  # fmt: skip
    for status, colour in colours.items():
        assert f".status-{status}::before{{color:{colour}}}" in html
    assert "Major Service Outage" in html  # the banner
    assert "No incidents in the past 7 days." in html


def test_page_timeline_history_and_maintenance() -> None:
    open_one = incident("inc-open", status=IncidentStatus.MONITORING, opened_at=NOW - 1800)
    recent = incident("inc-recent", status=IncidentStatus.RESOLVED, title="Recent one")
    old = incident("inc-old", status=IncidentStatus.RESOLVED, opened_at=NOW - 9 * 86400)
    window = Maintenance(NOW + 3600, NOW + 7200, ("carriers/ups",), "UPS upgrade", "m-1")
    html = render_status_page(
        snapshot(components=COMPONENTS, incidents=[open_one, recent, old], maintenances=[window])
    )
    timeline = html[html.index('id="incident-inc-open"') :]
    assert timeline.index("Monitoring") < timeline.index("Investigating")  # newest first
    assert "2026-11-28 09:30 UTC" in timeline
    assert 'id="incident-inc-recent"' in html
    assert 'id="incident-inc-old"' not in html  # older than 7 days
    assert "UPS upgrade" in html and "Scheduled" in html
    assert "2026-11-28 11:00 UTC" in html


def test_page_escapes_user_text() -> None:
    hostile = incident(title="<script>alert(1)</script>")
    hostile.updates[0].body = '<img src=x onerror="alert(2)">'
    page = PageInfo(name="<b>Status</b>")
    html = render_status_page(snapshot(page=page, components=COMPONENTS, incidents=[hostile]))
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<img" not in html
    assert "&lt;img src=x onerror=&#34;alert(2)&#34;&gt;" in html  # markupsafe spells " so
    assert "<b>Status</b>" not in html


# ---------------------------------------------------------------------------- field semantics


def test_old_status_is_the_status_before_each_update_hidden_ones_included() -> None:
    live = incident(impact=MAJOR)
    live.updates += [
        IncidentUpdate(NOW - 3000, IncidentStatus.INVESTIGATING, PARTIAL, "", "ratio 0.4", False),
        IncidentUpdate(NOW - 2400, IncidentStatus.IDENTIFIED, PARTIAL, "Cause found."),
        IncidentUpdate(NOW - 1800, IncidentStatus.MONITORING, OK, "Fix out."),
    ]
    shaped = statuspage.incident_json(live, snapshot(components=COMPONENTS))
    changes = [
        (u["id"], u["status"], u["affected_components"][0]["old_status"],
         u["affected_components"][0]["new_status"])
        for u in shaped["incident_updates"]
    ]  # fmt: skip
    assert changes == [
        ("inc-1-4", "monitoring", "partial_outage", "operational"),
        ("inc-1-3", "identified", "partial_outage", "partial_outage"),  # not "operational"
        ("inc-1-1", "investigating", "operational", "major_outage"),
    ]


def test_a_manual_update_during_an_outage_keeps_the_outage_as_old_status() -> None:
    live = incident(impact=MAJOR)
    live.updates.append(IncidentUpdate(NOW - 60, IncidentStatus.IDENTIFIED, MAJOR, "Found it."))
    newest = statuspage.incident_json(live, snapshot())["incident_updates"][0]
    assert newest["affected_components"][0]["old_status"] == "major_outage"
    assert newest["affected_components"][0]["new_status"] == "major_outage"


def test_incident_started_at_is_when_the_failure_began() -> None:
    live = incident(opened_at=NOW - 1800)
    live.started_at = NOW - 3600
    shaped = statuspage.incident_json(live, snapshot())
    assert shaped["started_at"] == "2026-11-28T09:00:00Z"
    assert shaped["created_at"] == "2026-11-28T09:30:00Z"
    live.started_at = None  # an incident opened by hand: no failure clock, so it opened then
    assert statuspage.incident_json(live, snapshot())["started_at"] == "2026-11-28T09:30:00Z"


def test_incident_updated_at_ignores_updates_kept_for_on_call() -> None:
    live = incident(opened_at=NOW - 1800)
    live.updates.append(IncidentUpdate(NOW - 60, IncidentStatus.INVESTIGATING, PARTIAL, "", "x",
                                       False))  # fmt: skip
    assert statuspage.incident_json(live, snapshot())["updated_at"] == "2026-11-28T09:30:00Z"


def test_a_maintenance_planned_for_tomorrow_was_created_today_and_has_not_started() -> None:
    tomorrow = NOW + 86400
    window = Maintenance(tomorrow, tomorrow + 3600, ("carriers/dhl",), "DHL", "m-1", NOW - 600)
    shaped = statuspage.maintenance_json(window, snapshot(components=COMPONENTS))
    assert shaped["status"] == "scheduled"
    assert (shaped["created_at"], shaped["updated_at"]) == ("2026-11-28T09:50:00Z",) * 2
    assert shaped["started_at"] is None
    assert shaped["scheduled_for"] == "2026-11-29T10:00:00Z"
    [update] = shaped["incident_updates"]
    assert (update["status"], update["created_at"]) == ("scheduled", "2026-11-28T09:50:00Z")
    unknown = statuspage.maintenance_json(replace(window, created_at=None), snapshot())
    assert (unknown["created_at"], unknown["updated_at"], unknown["started_at"]) == (None,) * 3


def test_a_completed_maintenance_was_updated_when_it_completed() -> None:
    # cancelled early: the store moved its end to the cancel time
    window = Maintenance(NOW - 7200, NOW - 1800, ("carriers/dhl",), "DHL", "m-1", NOW - 86400)
    shaped = statuspage.maintenance_json(window, snapshot(components=COMPONENTS))
    assert shaped["status"] == "completed"
    assert shaped["created_at"] == "2026-11-27T10:00:00Z"
    assert shaped["started_at"] == "2026-11-28T08:00:00Z"
    assert shaped["updated_at"] == shaped["resolved_at"] == "2026-11-28T09:30:00Z"
    stages = [
        (u["status"], u["created_at"], u["affected_components"][0]["old_status"],
         u["affected_components"][0]["new_status"])
        for u in shaped["incident_updates"]
    ]  # fmt: skip
    assert stages == [
        ("completed", "2026-11-28T09:30:00Z", "under_maintenance", "operational"),
        ("in_progress", "2026-11-28T08:00:00Z", "operational", "under_maintenance"),
        ("scheduled", "2026-11-27T10:00:00Z", "operational", "operational"),
    ]


def test_an_active_maintenance_was_updated_when_it_started() -> None:
    window = Maintenance(NOW - 600, NOW + 600, ("carriers/dhl",), "DHL", "m-1", NOW - 86400)
    shaped = statuspage.maintenance_json(window, snapshot(components=COMPONENTS))
    assert shaped["status"] == "in_progress"
    assert shaped["started_at"] == shaped["updated_at"] == "2026-11-28T09:50:00Z"
    assert shaped["resolved_at"] is None


def test_old_status_counts_the_other_incidents_on_the_component() -> None:
    """DHL is in major outage from one rule's incident when a second rule's incident opens:
    the component was not operational before that update, and it stays in major outage."""
    first = incident("inc-a", opened_at=NOW - 3600, impact=MAJOR)
    second = incident("inc-b", opened_at=NOW - 600, impact=PARTIAL)
    shaped = statuspage.incident_json(second, snapshot(incidents=[second, first]))
    [update] = shaped["incident_updates"]
    change = update["affected_components"][0]
    assert (change["old_status"], change["new_status"]) == ("major_outage", "major_outage")
    alone = statuspage.incident_json(second, snapshot(incidents=[second]))
    change = alone["incident_updates"][0]["affected_components"][0]
    assert (change["old_status"], change["new_status"]) == ("operational", "partial_outage")


def test_a_window_starting_during_an_outage_names_the_outage_as_old_status() -> None:
    outage = incident("inc-a", opened_at=NOW - 7200, impact=MAJOR)
    window = Maintenance(NOW - 3600, NOW - 600, ("carriers/dhl",), "DHL", "m-1", NOW - 86400)
    shaped = statuspage.maintenance_json(window, snapshot(incidents=[outage]))
    changes = {
        u["status"]: (u["affected_components"][0]["old_status"],
                      u["affected_components"][0]["new_status"])
        for u in shaped["incident_updates"]
    }  # fmt: skip
    assert changes == {
        "scheduled": ("operational", "operational"),  # recorded a day ago, before the outage
        "in_progress": ("major_outage", "under_maintenance"),
        # the outage outlasted the window: verifying until the component is back
        "verifying": ("under_maintenance", "major_outage"),
    }
