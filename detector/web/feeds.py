"""`/history.atom` and `/history.rss`: the incidents, newest first, built with feedgen.

Each entry is one incident: its title, a link to its page, and its public timeline as text
(newest first). Only public text: public updates' bodies (default sentences in the feed's
language), never evidence.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Literal

from feedgen.feed import FeedGenerator

from detector.model import Incident
from detector.timeutil import in_range
from detector.web import i18n
from detector.web.page import public_updates
from detector.web.statuspage import Snapshot, incident_updated_at

FeedKind = Literal["atom", "rss"]


def _moment(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch if in_range(epoch) else 0.0, tz=UTC)


def _summary(incident: Incident, lang: str, name: str | None) -> str:
    _ = i18n.translations(lang).gettext
    lines = []
    for update in public_updates(incident):
        label = _(i18n.INCIDENT_STATUS_LABELS[update.status])
        stamp = _moment(update.at).strftime("%Y-%m-%d %H:%M UTC")
        body = i18n.public_body(incident, update, name, lang)
        lines.append(f"{label} ({stamp}): {body}")
    return "\n".join(lines) or _(i18n.INCIDENT_STATUS_LABELS[incident.status])


def render_feed(
    snapshot: Snapshot, incidents: Sequence[Incident], base_url: str, kind: FeedKind, lang: str
) -> bytes:
    """The feed document (UTF-8 XML) for `incidents`, newest first."""
    _ = i18n.translations(lang).gettext
    names = {record.id: record.name for record in snapshot.components}
    feed = FeedGenerator()
    feed.id(f"{base_url}/history")
    feed.title(f"{snapshot.page.name}: {_('Incident history')}")
    feed.link(href=f"{base_url}/history", rel="alternate")
    feed.link(href=f"{base_url}/history.{kind}", rel="self")
    feed.description(_("Incidents on %(page)s") % {"page": snapshot.page.name})
    feed.language(lang)
    newest = max((incident_updated_at(i) for i in incidents), default=snapshot.now)
    feed.updated(_moment(newest))
    # feedgen writes entries in reverse order of adding: add the oldest first
    for incident in reversed(incidents):
        url = f"{base_url}/incidents/{incident.id}"
        entry = feed.add_entry()
        entry.id(url)
        entry.guid(url, permalink=True)
        entry.title(incident.title)
        entry.link(href=url)
        entry.published(_moment(incident.opened_at))
        entry.updated(_moment(incident_updated_at(incident)))
        entry.description(_summary(incident, lang, names.get(incident.component)))
    document: bytes = feed.atom_str(pretty=True) if kind == "atom" else feed.rss_str(pretty=True)
    return document
