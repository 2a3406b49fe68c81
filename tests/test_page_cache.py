"""The status page's history bars are made once per thing they show: a quiet component shares
all-operational bars, and a component's fragment is made again only when its history changes
(a new incident on it, its open incident's minutes moving on) or the day rolls over."""

from __future__ import annotations

import re

from factories import make_incident

from detector.clock import ManualClock
from detector.model import ComponentStatus, Incident, Maintenance
from detector.store.base import ComponentRecord
from detector.store.sql import SqlStore
from detector.web.history import DAY, HISTORY_DAYS, component_history, day_start
from detector.web.page import _bars, environment, render_status_page
from detector.web.site import Site
from detector.web.statuspage import PageInfo, Snapshot

NOW = 1_795_860_000.0  # 2026-11-28T10:00:00Z
OK = ComponentStatus.OPERATIONAL
IDS = ("carriers/dhl", "carriers/ups")


def page(now: float, incidents: list[Incident], lang: str = "en") -> str:
    components = [
        ComponentRecord(cid, cid.split("/")[1].upper(), "carriers", "", OK, i, now)
        for i, cid in enumerate(IDS)
    ]
    snapshot = Snapshot(PageInfo(), now, components, incidents)
    histories = {c: component_history(c, incidents, [], now) for c in IDS}
    return render_status_page(snapshot, lang=lang, histories=histories)


def bars_of(html: str, component: str) -> list[tuple[str, str]]:
    row = html[html.index(f'<li id="{component}"') :]
    row = row[: row.index("</ol>")]
    return re.findall(r'<li class="bar-([a-z_]+)[^"]*" title="([^"]*)"><span class="vh">\2<', row)


def test_quiet_components_share_their_bars_and_fragment() -> None:
    dhl = component_history("carriers/dhl", [], [], NOW)
    ups = component_history("carriers/ups", [], [], NOW + 60)
    assert dhl.bars is ups.bars and dhl.uptime == ups.uptime == 1.0
    assert len(dhl.bars) == HISTORY_DAYS and {bar.status for bar in dhl.bars} == {OK}
    assert _bars(dhl, "en") is _bars(ups, "en")
    html = page(NOW, [])
    assert bars_of(html, "carriers.ups")[-1] == ("operational", "28 Nov 2026: no incidents")
    assert len(bars_of(html, "carriers.dhl")) == HISTORY_DAYS


def test_an_incident_outside_the_window_leaves_the_bars_quiet_one_inside_does_not() -> None:
    old = make_incident("old", NOW - 100 * DAY, resolved_at=NOW - 95 * DAY)
    assert component_history("carriers/dhl", [old], [], NOW).bars[-1].status is OK
    later = Maintenance(NOW + 600, NOW + 1200, ("carriers/dhl",), "Later", "m-1")
    assert component_history("carriers/dhl", [], [later], NOW).uptime == 1.0
    inside = make_incident("new", NOW - 89.5 * DAY, resolved_at=NOW - 89.4 * DAY)
    first = component_history("carriers/dhl", [inside], [], NOW).bars[0]
    assert first.status is ComponentStatus.MAJOR_OUTAGE and first.seconds


def test_a_new_incident_renders_that_components_bars_again_not_the_others() -> None:
    before = page(NOW, [])
    quiet = _bars(component_history("carriers/ups", [], [], NOW), "en")
    incident = make_incident("inc-1", NOW - 1800)
    after = page(NOW, [incident])
    assert bars_of(before, "carriers.dhl")[-1][0] == "operational"
    assert bars_of(after, "carriers.dhl")[-1] == (
        "major_outage",
        "28 Nov 2026: Major outage (30 min major outage)",
    )
    assert bars_of(after, "carriers.ups") == bars_of(before, "carriers.ups")
    ups = component_history("carriers/ups", [incident], [], NOW)
    assert _bars(ups, "en") is quiet  # the other component's fragment was kept
    # the open incident's minutes move on: its fragment follows
    later = page(NOW + 600, [incident])
    assert bars_of(later, "carriers.dhl")[-1][1].endswith("(40 min major outage)")


def test_the_bars_move_on_when_the_day_rolls_over_and_follow_the_language() -> None:
    incident = make_incident("inc-1", NOW - 1800, resolved_at=NOW - 600)
    today = bars_of(page(NOW, [incident]), "carriers.dhl")
    tomorrow = bars_of(page(day_start(NOW) + DAY + 60, [incident]), "carriers.dhl")
    assert today[-1][1].startswith("28 Nov 2026: Major outage")
    assert tomorrow[-1] == ("operational", "29 Nov 2026: no incidents")
    assert tomorrow[-2] == today[-1] and tomorrow[:-2] == today[1:-1]
    spanish = bars_of(page(NOW, [incident], lang="es"), "carriers.dhl")
    assert spanish[-1][1].startswith("28 nov 2026") and spanish[-1] != today[-1]


def test_a_site_compiles_its_language_before_the_first_reader(store: SqlStore) -> None:
    env = environment("it")
    env.cache.clear()  # type: ignore[union-attr]
    Site(store, ManualClock(NOW), PageInfo(), "it")
    compiled = len(env.cache)  # type: ignore[arg-type]
    assert compiled >= 5  # every page template and what they import
    page(NOW, [], lang="it")
    assert len(env.cache) == compiled  # type: ignore[arg-type]
