"""The public status page, its history by month and one page per incident: server-rendered
HTML5 from jinja2 templates (autoescaped), no JavaScript, in the reader's language.

Colour is never the only signal: each status also has a text label, history bars carry a
text alternative and a hatch for any day that was not all operational. Times are shown in
UTC. The page reloads itself every 60 s with a meta refresh, which needs no script.
Only public text is shown: public updates' bodies (the engine's default sentences in the
reader's language, i18n.public_body), never evidence.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime
from typing import Any

from babel.dates import format_date
from babel.numbers import format_percent
from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup, escape

from detector.model import ComponentStatus, Incident, IncidentStatus, IncidentUpdate, Maintenance
from detector.timeutil import in_range
from detector.web import i18n
from detector.web.history import HISTORY_DAYS, ComponentHistory, DayBar, month_bounds
from detector.web.statuspage import (
    Snapshot,
    group_name,
    group_records,
    indicator,
    maintenance_status,
    public_id,
    worst,
)

STATUS_COLOURS = {
    ComponentStatus.OPERATIONAL: "#2e7d32",
    ComponentStatus.DEGRADED_PERFORMANCE: "#f9a825",
    ComponentStatus.PARTIAL_OUTAGE: "#ef6c00",
    ComponentStatus.MAJOR_OUTAGE: "#c62828",
    ComponentStatus.UNDER_MAINTENANCE: "#1565c0",
}
HISTORY_SECONDS = 7 * 86400.0  # the "past days" list under the components


# ---------------------------------------------------------------------------- helpers


def when(epoch: float) -> Markup:
    """`<time>` in UTC; a stored time no reader could format shows as unknown, not a 500."""
    if not in_range(epoch):
        return Markup("<time>unknown time</time>")
    moment = datetime.fromtimestamp(epoch, tz=UTC)
    machine = moment.isoformat(timespec="seconds").replace("+00:00", "Z")
    return Markup('<time datetime="{}">{:%Y-%m-%d %H:%M} UTC</time>').format(machine, moment)


def public_updates(incident: Incident) -> list[IncidentUpdate]:
    """The timeline a reader sees: public updates only, newest first; never the evidence."""
    return sorted((u for u in incident.updates if u.public), key=lambda u: u.at, reverse=True)


def _names_of(ids: Iterable[str], names: Mapping[str, str]) -> str:
    return ", ".join(names.get(component, component) for component in ids)


@functools.lru_cache(maxsize=4096)
def _day_text(day: date, lang: str, quiet: bool) -> str:
    """Formatting a date costs ~50 µs and a page has 90 per component: each is done once."""
    text = str(format_date(day, "d MMM yyyy", locale=lang))
    if quiet:
        return i18n.translations(lang).gettext("%(day)s: no incidents") % {"day": text}
    return text


def _bar_text(bar: DayBar, lang: str) -> str:
    _ = i18n.translations(lang).gettext
    day = _day_text(bar.day, lang, not bar.seconds)
    if not bar.seconds:
        return day
    spent = [
        _("%(minutes)s min %(status)s")
        % {"minutes": minutes, "status": _(i18n.STATUS_LABELS[status]).lower()}
        for status, minutes in bar.minutes()
    ]
    return f"{day}: {_(i18n.STATUS_LABELS[bar.status])} ({', '.join(spent)})"


@functools.cache
def environment(lang: str) -> Environment:
    """One template environment per language, its gettext and helpers bound to it."""
    env = Environment(
        loader=PackageLoader("detector.web", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
    )
    translations = i18n.translations(lang)
    env.install_gettext_translations(translations, newstyle=True)  # type: ignore[attr-defined]
    _ = translations.gettext

    def maintenance_label(item: Maintenance, snapshot: Snapshot) -> str:
        return _(i18n.MAINTENANCE_STATUS_LABELS[maintenance_status(item, snapshot)])

    env.globals.update(
        lang=lang,
        languages=[(code, i18n.language_name(code)) for code in i18n.LANGUAGES],
        colours={status.value: colour for status, colour in STATUS_COLOURS.items()},
        statuses=list(STATUS_COLOURS),
        status_label=lambda status: _(i18n.STATUS_LABELS[status]),
        incident_label=lambda status: _(i18n.INCIDENT_STATUS_LABELS[status]),
        indicator_label=lambda value: _(i18n.INDICATOR_LABELS[value]),
        maintenance_label=maintenance_label,
        countries=lambda markets: i18n.markets_text(markets, lang),
        percent=lambda value: format_percent(value, "#,##0.00%", locale=lang),
        when=when,
        public_updates=public_updates,
        body_of=lambda item, update, names: i18n.public_body(
            item, update, names.get(item.component), lang
        ),
        names_of=_names_of,
    )
    return env


def warm(lang: str) -> None:
    """Compiles the templates and loads `lang`'s locale data and catalog now, at start-up: the
    first rendering otherwise spends ~150 ms on them, on the loop, with a crowd waiting."""
    env = environment(lang)
    for template in ("base.html", "macros.html", "index.html", "history.html", "incident.html"):
        env.get_template(template)
    _day_text(date(2000, 1, 1), lang, True)
    format_percent(1.0, "#,##0.00%", locale=lang)
    month_name(2000, 1, lang)


def _render(template: str, snapshot: Snapshot, lang: str, **context: Any) -> str:
    names = {record.id: record.name for record in snapshot.components}
    return (
        environment(lang)
        .get_template(template)
        .render(
            page_name=snapshot.page.name,
            snapshot=snapshot,
            now=snapshot.now,
            names=names,
            **context,
        )
    )


def month_name(year: int, month: int, lang: str) -> str:
    return str(format_date(datetime(year, month, 1), "LLLL yyyy", locale=lang))


# ---------------------------------------------------------------------------- pages


# Bar fragments by what they show, shared by the renderings of every language. A rendering
# in a worker thread may race another on a miss, which only makes the same fragment twice.
_BARS_CACHE: dict[tuple[Any, ...], Markup] = {}
_BARS_CACHE_SIZE = 2048


def _bars(history: ComponentHistory | None, lang: str) -> Markup:
    """The `<li>` of each day, made here (a jinja2 call costs ~10 µs, and 40 components x 90
    days are most of the page) and kept by what they show: after a commit only the bars of a
    component whose history changed, or all when the day rolls over, are made again."""
    if history is None or not history.bars:
        return Markup()
    shown = tuple(
        (i, bar.status, *bar.minutes()) for i, bar in enumerate(history.bars) if bar.seconds
    )
    key = (history.bars[0].day, len(history.bars), shown, lang)
    found = _BARS_CACHE.get(key)
    if found is None:
        items = []
        for bar in history.bars:
            classes = f"bar-{bar.status.value} hatched" if bar.seconds else "bar-operational"
            text = escape(_bar_text(bar, lang))
            items.append(
                f'<li class="{classes}" title="{text}"><span class="vh">{text}</span></li>'
            )
        found = Markup("\n".join(items) + "\n")
        if len(_BARS_CACHE) >= _BARS_CACHE_SIZE:  # days roll over: start over, not grow
            _BARS_CACHE.clear()
        _BARS_CACHE[key] = found
    return found


def _groups(
    snapshot: Snapshot, histories: Mapping[str, ComponentHistory], lang: str
) -> list[dict[str, Any]]:
    groups = []
    for group, members in group_records(snapshot.components).items():
        rows = [
            {
                "id": public_id(member.id),
                "name": member.name,
                "description": member.description,
                "status": member.status,
                "history": histories.get(member.id),
                "bars": _bars(histories.get(member.id), lang),
            }
            for member in members
        ]
        groups.append(
            {
                "id": public_id(group),
                "name": group_name(snapshot.page, group),
                "status": worst([member.status for member in members]),
                "members": rows,
            }
        )
    return groups


def render_status_page(
    snapshot: Snapshot,
    *,
    lang: str = i18n.DEFAULT_LANGUAGE,
    histories: Mapping[str, ComponentHistory] | None = None,
    history_seconds: float = HISTORY_SECONDS,
    history_limit: int = 20,
    refresh_seconds: int = 60,
) -> str:
    """The whole page. `snapshot.incidents` holds the unresolved ones and recent history;
    `histories` the 90-day bars per component id (none drawn for a component without)."""
    now = snapshot.now
    since = now - history_seconds
    recent = [i for i in snapshot.incidents if i.resolved_at is not None and i.resolved_at >= since]
    recent.sort(key=lambda i: i.resolved_at or 0.0, reverse=True)
    active = [
        m
        for m in snapshot.maintenances
        if maintenance_status(m, snapshot) in ("in_progress", "verifying")
    ]
    return _render(
        "index.html",
        snapshot,
        lang,
        refresh_seconds=int(refresh_seconds),
        indicator=indicator(snapshot),
        active=active,
        upcoming=[m for m in snapshot.maintenances if m.start > now],
        open_incidents=[i for i in snapshot.incidents if i.status is not IncidentStatus.RESOLVED],
        groups=_groups(snapshot, histories or {}, lang),
        days=HISTORY_DAYS,
        recent=recent[:history_limit],
        recent_days=max(1, round(history_seconds / 86400)),
    )


Month = tuple[int, int]


def render_history_month(
    snapshot: Snapshot,
    month: Month,
    *,
    older: Month | None,
    newer: Month | None,
    lang: str = i18n.DEFAULT_LANGUAGE,
) -> str:
    """The incidents open at some time in `month` (snapshot.incidents), newest first."""
    start, end = month_bounds(*month)
    chosen = [
        i
        for i in snapshot.incidents
        if i.opened_at < end and (i.resolved_at is None or i.resolved_at >= start)
    ]

    def link(value: Month | None) -> tuple[str, str] | None:
        return (
            None if value is None else (f"{value[0]:04d}-{value[1]:02d}", month_name(*value, lang))
        )

    return _render(
        "history.html",
        snapshot,
        lang,
        refresh_seconds=0,
        month_name=month_name(*month, lang),
        incidents=chosen,
        older=link(older),
        newer=link(newer),
    )


def render_incident_page(
    snapshot: Snapshot, incident: Incident, *, lang: str = i18n.DEFAULT_LANGUAGE
) -> str:
    opened = datetime.fromtimestamp(incident.opened_at if in_range(incident.opened_at) else 0, UTC)
    return _render(
        "incident.html",
        snapshot,
        lang,
        refresh_seconds=60 if incident.status is not IncidentStatus.RESOLVED else 0,
        item=incident,
        month=f"{opened.year:04d}-{opened.month:02d}",
        month_name=month_name(opened.year, opened.month, lang),
    )
