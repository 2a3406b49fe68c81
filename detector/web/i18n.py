"""The page's languages: gettext catalogs read with Babel at start, the language a request
gets, country names for market codes, and the engine's default public incident sentences
shown in the page's language (their msgids are detector/engine/texts.py's English templates).

Catalogs are the standard `.po` files under `translations/<lang>/LC_MESSAGES/messages.po`;
they are compiled in memory on first use, so no build step and no `.mo` file is needed.
`make catalogs` re-extracts the messages and updates every catalog; tests/test_i18n.py fails
when a catalog misses one.
"""

from __future__ import annotations

import functools
import io
import re
from collections.abc import Sequence
from pathlib import Path

from babel import Locale, UnknownLocaleError
from babel.lists import format_list
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

from detector.engine import texts
from detector.model import ComponentStatus, Incident, IncidentStatus, IncidentUpdate

LANGUAGES = ("en", "es", "nl", "de", "fr", "it")
DEFAULT_LANGUAGE = "en"
TRANSLATIONS = Path(__file__).parent / "translations"
DOMAIN = "messages"


def N_(message: str) -> str:
    """Marks a message for extraction where it is defined; translated where it is shown."""
    return message


# English words from ComponentStatus.words, capitalised (tests/test_i18n.py checks they agree).
STATUS_LABELS = {
    ComponentStatus.OPERATIONAL: N_("Operational"),
    ComponentStatus.DEGRADED_PERFORMANCE: N_("Degraded performance"),
    ComponentStatus.PARTIAL_OUTAGE: N_("Partial outage"),
    ComponentStatus.MAJOR_OUTAGE: N_("Major outage"),
    ComponentStatus.UNDER_MAINTENANCE: N_("Under maintenance"),
}
INCIDENT_STATUS_LABELS = {
    IncidentStatus.INVESTIGATING: N_("Investigating"),
    IncidentStatus.IDENTIFIED: N_("Identified"),
    IncidentStatus.MONITORING: N_("Monitoring"),
    IncidentStatus.RESOLVED: N_("Resolved"),
}
MAINTENANCE_STATUS_LABELS = {
    "scheduled": N_("Scheduled"),
    "in_progress": N_("In progress"),
    "verifying": N_("Verifying"),
    "completed": N_("Completed"),
}
# statuspage.INDICATOR_DESCRIPTIONS, the banner over the page
INDICATOR_LABELS = {
    "none": N_("All Systems Operational"),
    "minor": N_("Minor Service Outage"),
    "major": N_("Partial System Outage"),
    "critical": N_("Major Service Outage"),
    "maintenance": N_("Service Under Maintenance"),
}


@functools.cache
def translations(lang: str) -> Translations:
    """The catalog of `lang` (English for a language we do not have)."""
    if lang not in LANGUAGES:
        lang = DEFAULT_LANGUAGE
    path = TRANSLATIONS / lang / "LC_MESSAGES" / f"{DOMAIN}.po"
    with path.open("rb") as handle:
        catalog = read_po(handle, locale=lang, domain=DOMAIN)
    compiled = io.BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return Translations(compiled, domain=DOMAIN)


_ACCEPT_ITEM = re.compile(
    r"^\s*([A-Za-z]{1,8})(?:-[A-Za-z0-9]{1,8})*\s*(?:;\s*q\s*=\s*([0-9.]{1,6}))?\s*$"
)


def choose_language(query: str | None, accept_language: str | None, default: str) -> str:
    """`?lang=` when we have it, then the best `Accept-Language` we have, then `default`."""
    if query and query.lower() in LANGUAGES:
        return query.lower()
    best, best_q = default, 0.0
    for position, item in enumerate((accept_language or "")[:1000].split(",")[:50]):
        found = _ACCEPT_ITEM.match(item)
        if found is None:
            continue
        try:
            q = float(found.group(2)) if found.group(2) else 1.0
        except ValueError:
            continue
        q -= position * 1e-6  # on equal weights the first listed wins
        lang = found.group(1).lower()
        if lang in LANGUAGES and q > 0 and q > best_q:
            best, best_q = lang, q
    return best


def country_name(code: str, lang: str) -> str:
    """`DE` -> "Germany" / "Alemania"; a code Babel does not know stays as it is. English
    uses the engine's names (Babel's plus "the" where English needs it: "the Netherlands"),
    so the page reads exactly like the stored sentence."""
    if lang == DEFAULT_LANGUAGE:
        return texts.country(code.upper())
    try:
        locale = Locale.parse(lang)
    except (ValueError, UnknownLocaleError):
        locale = Locale.parse(DEFAULT_LANGUAGE)
    return str(locale.territories.get(code.upper(), code))


def markets_text(markets: Sequence[str], lang: str) -> str:
    """("DE", "NL") -> "Germany and the Netherlands" in the language's own list style."""
    names = [country_name(code, lang) for code in markets]
    return format_list(names, locale=lang) if names else ""


def language_name(lang: str) -> str:
    """The language in its own words ("Español"), for the language links."""
    name = Locale.parse(lang).get_display_name(lang) or lang
    return name[:1].upper() + name[1:]


@functools.lru_cache(maxsize=4096)
def _sentence(
    body: str, status: IncidentStatus, names: tuple[str, ...], markets: tuple[str, ...], lang: str
) -> str:
    for name in names:
        found = texts.recognise(body, status, name, markets)
        if found is None:
            continue
        kind, listed = found
        gettext = translations(lang).gettext
        try:
            return texts.default_sentence(status, kind, name, markets_text(listed, lang), gettext)
        except (KeyError, IndexError, ValueError):  # a broken translation: the stored English
            return body
    return body


def public_body(incident: Incident, update: IncidentUpdate, name: str | None, lang: str) -> str:
    """What the page shows of `update`: the stored body, except that the engine's own default
    sentence (recognised by texts.recognise: same words for the update's status, the incident's
    component and some of its markets) is shown in `lang`. A rule's own text and an on-call's
    are shown as written; English is always the stored text. `name` is the component's display
    name; the engine falls back to the last part of the id, so that is tried too."""
    if lang == DEFAULT_LANGUAGE or not update.body:
        return update.body
    names = (name or "", incident.component.rsplit("/", 1)[-1])
    return _sentence(
        update.body, update.status, tuple(n for n in names if n), incident.markets, lang
    )
