"""The public HTML site over a real SQLite store on a loopback server: the page with bars,
uptime, open incidents and markets, maintenance, languages, /history by month, incident
pages, and the errors (404 JSON, 503 JSON) for what cannot be shown."""

from __future__ import annotations

import re

from apikit import NOW, Client, ClientFactory, commit, open_incident

from detector.model import ComponentStatus, IncidentStatus, IncidentUpdate, Maintenance
from detector.store.sql import SqlStore

PARTIAL = ComponentStatus.PARTIAL_OUTAGE


def bars_of(html: str, component: str) -> list[str]:
    row = html[html.index(f'<li id="{component}"') :]
    row = row[: row.index("</ol>")]
    return re.findall(r'<li class="bar-([a-z_]+)[^"]*" title="([^"]*)"', row)


async def test_all_operational(client: Client) -> None:
    response = await client.get("/")
    assert response.status == 200
    assert response.headers["Content-Language"] == "en"
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]
    html = await response.text()
    assert "<script" not in html and '<meta http-equiv="refresh" content="60">' in html
    assert '<html lang="en">' in html
    assert "All Systems Operational" in html
    for landmark in ("<header>", "<main>", "<footer>", '<nav class="top"'):
        assert landmark in html
    bars = bars_of(html, "carriers.dhl")
    assert len(bars) == 90
    assert bars[-1] == ("operational", "28 Nov 2026: no incidents")
    assert html.count("100.00% uptime") == 4
    assert "Open incidents" not in html


async def test_an_incident_open_in_one_market(client: Client, store: SqlStore) -> None:
    incident = open_incident()
    incident.updates.append(
        IncidentUpdate(NOW - 600, IncidentStatus.INVESTIGATING, PARTIAL, "secret", public=False)
    )
    commit(store, incident)
    html = await (await client.get("/")).text()
    assert "Major Service Outage" in html and "Open incidents" in html
    article = html[html.index('id="incident-inc-1"') :]
    article = article[: article.index("</article>")]
    assert "Markets: Germany" in article and "Labels fail." in article
    assert "secret" not in html
    assert 'href="/incidents/inc-1"' in article
    # today: 20 min major then 10 min partial (the on-call update changes the status too)
    assert bars_of(html, "carriers.dhl")[-1] == (
        "major_outage",
        "28 Nov 2026: Major outage (20 min major outage, 10 min partial outage)",
    )
    assert bars_of(html, "carriers.ups")[-1][0] == "operational"
    assert "99.98% uptime" in html  # (1200 + 0.3 * 600) s of 89 days and 10 hours


async def test_maintenance_active_and_upcoming(client: Client, store: SqlStore) -> None:
    store.add_maintenance(Maintenance(NOW - 600, NOW + 600, ("carriers/dhl",), "Now", "m-now"))
    store.add_maintenance(Maintenance(NOW + 3600, NOW + 7200, ("carriers/ups",), "Later", "m-2"))
    store.add_maintenance(Maintenance(NOW - 7200, NOW - 3600, ("carriers/ups",), "Done", "m-0"))
    html = await (await client.get("/")).text()
    section = html[html.index('id="maintenance"') : html.index('id="components"')]
    assert "In progress" in section and "Scheduled" in section and "Affects UPS" in section
    assert section.index("m-now") < section.index("m-2") and "Done" not in section
    assert bars_of(html, "carriers.ups")[-1][1].endswith("(60 min under maintenance)")


async def test_spanish_by_query_then_header_then_config(
    make_client: ClientFactory, store: SqlStore
) -> None:
    commit(store, open_incident())
    client = await make_client(page_language="de")
    spanish = await (await client.get("/?lang=es", headers={"Accept-Language": "nl"})).text()
    assert '<html lang="es">' in spanish
    assert "Interrupción mayor" in spanish and "Mercados: Alemania" in spanish
    assert "Incidencias abiertas" in spanish and "100,00% disponibilidad" in spanish
    dutch = await client.get("/", headers={"Accept-Language": "nl-BE,nl;q=0.9"})
    assert dutch.headers["Content-Language"] == "nl"
    assert "Grote storing" in await dutch.text()
    german = await client.get("/")
    assert german.headers["Content-Language"] == "de" and german.headers["Vary"]
    assert "Markets" not in await german.text()


async def test_history_by_month_and_incident_pages(client: Client, store: SqlStore) -> None:
    older = open_incident("inc-old", "carriers/ups", "UPS: old")
    older.opened_at = older.updates[0].at = NOW - 70 * 86400  # 2026-09-19
    older.resolved_at = NOW - 69 * 86400
    older.status = IncidentStatus.RESOLVED
    commit(store, open_incident(), older)
    current = await (await client.get("/history")).text()
    assert "Incidents in November 2026" in current and 'href="/incidents/inc-1"' in current
    assert 'href="/history/2026-09" rel="prev"' in current  # skips empty October
    assert 'rel="next"' not in current
    september = await (await client.get("/history/2026-09")).text()
    assert "UPS: old" in september and "inc-1" not in september
    assert 'href="/history/2026-10" rel="next"' in september
    october = await (await client.get("/history/2026-10?lang=fr")).text()
    assert "Aucun incident en octobre 2026." in october
    page = await (await client.get("/incidents/inc-1")).text()
    assert "Labels fail." in page and 'href="/history/2026-11"' in page


async def test_what_cannot_be_shown_is_404_json(client: Client) -> None:
    for path in (
        "/history/2026-13", "/history/2999-01", "/history/1969-12", "/history/abc",
        "/history/2026-1", "/incidents/nope", "/incidents/a%20b", "/incidents/" + "a" * 101,
    ):  # fmt: skip
        response = await client.get(path)
        assert response.status == 404, path
        assert (await response.json())["error"].endswith("not found")


async def test_a_broken_store_is_503_not_500(client: Client, store: SqlStore) -> None:
    with store.engine.begin() as connection:
        connection.exec_driver_sql("DROP TABLE incidents")
    for path in ("/", "/history", "/incidents/inc-1", "/history.atom"):
        response = await client.get(path)
        assert response.status == 503, path
        assert await response.json() == {"error": "store unavailable, try again shortly"}


def contrast(foreground: str, background: str) -> float:
    """WCAG 2 contrast ratio of two #rrggbb colours."""

    def luminance(colour: str) -> float:
        channels = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
        r, g, b = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * r + 0.7152 * g + 0.0722 * b

    high, low = sorted((luminance(foreground), luminance(background)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def test_every_banner_and_text_colour_has_aa_contrast() -> None:
    from detector.web.page import environment

    css = environment("en").loader.get_source(environment("en"), "base.html")[0]  # type: ignore[union-attr]
    banners = dict(re.findall(r"\.banner\.(\w+)\{background:(#[0-9a-f]{6})", css))
    assert set(banners) == {"none", "minor", "major", "critical", "maintenance"}
    for name, background in banners.items():
        text = "#1a1a1a" if name == "minor" else "#ffffff"
        assert contrast(text, background) >= 4.5, name
    for text in ("#1a1a1a", "#444444", "#0b57a4"):  # body, times and footer, links
        assert contrast(text, "#ffffff") >= 4.5, text
