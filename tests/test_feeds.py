"""`/history.atom` and `/history.rss`: well-formed feeds of the newest incidents, each linking
to its page, with public text only."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree

import apikit
from apikit import NOW, Client, commit, open_incident

from detector.model import ComponentStatus, IncidentStatus, IncidentUpdate
from detector.store.sql import SqlStore

ATOM = "{http://www.w3.org/2005/Atom}"


def incidents(store: SqlStore) -> None:
    first = open_incident("inc-1", "carriers/dhl", "DHL: failing (DE)")
    first.updates.append(
        IncidentUpdate(NOW - 900, IncidentStatus.INVESTIGATING, ComponentStatus.MAJOR_OUTAGE,
                       "on-call only", "error_ratio (0.9) >= 0.5", public=False)
    )  # fmt: skip
    second = open_incident("inc-2", "carriers/ups", "UPS: <slow> & late")
    second.opened_at = second.updates[0].at = NOW - 86400
    commit(store, first, second)


async def test_atom(client: Client, store: SqlStore) -> None:
    incidents(store)
    response = await client.get("/history.atom")
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/atom+xml; charset=utf-8"
    text = await response.text()
    assert "on-call only" not in text and "error_ratio" not in text
    feed = ElementTree.fromstring(text.encode())
    base = f"http://{client.host}:{client.port}"
    assert feed.findtext(f"{ATOM}id") == f"{base}/history"
    entries = feed.findall(f"{ATOM}entry")
    assert [e.findtext(f"{ATOM}title") for e in entries] == [
        "DHL: failing (DE)",
        "UPS: <slow> & late",
    ]  # newest first; the XML escaping is the library's
    first = entries[0]
    assert first.findtext(f"{ATOM}id") == f"{base}/incidents/inc-1"
    link = first.find(f"{ATOM}link")
    assert link is not None and link.get("href") == f"{base}/incidents/inc-1"
    assert first.findtext(f"{ATOM}published") == "2026-11-28T09:30:00+00:00"
    summary = first.findtext(f"{ATOM}summary") or first.findtext(f"{ATOM}content") or ""
    assert summary == "Investigating (2026-11-28 09:30 UTC): Labels fail."


async def test_rss_in_the_readers_language(
    make_client: apikit.ClientFactory, store: SqlStore
) -> None:
    incidents(store)
    client = await make_client(page_url="https://status.example.com/")
    response = await client.get("/history.rss", headers={"Accept-Language": "es"})
    assert response.headers["Content-Type"] == "application/rss+xml; charset=utf-8"
    channel = ElementTree.fromstring(await response.read()).find("channel")
    assert channel is not None
    assert channel.findtext("language") == "es"
    assert channel.findtext("title") == "Sendcloud status: Historial de incidencias"
    items = channel.findall("item")
    assert [item.findtext("guid") for item in items] == [
        "https://status.example.com/incidents/inc-1",
        "https://status.example.com/incidents/inc-2",
    ]
    assert items[0].findtext("description") == "Investigando (2026-11-28 09:30 UTC): Labels fail."


async def test_an_empty_history_is_a_valid_feed(client: Client) -> None:
    for path in ("/history.atom", "/history.rss"):
        response = await client.get(path)
        assert response.status == 200
        ElementTree.fromstring(await response.read())
