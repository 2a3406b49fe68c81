"""The engine's default public sentences are the page's too: one English source
(detector/engine/texts.py, whose templates are the catalogs' msgids), shown in the reader's
language on the page, incident pages and feeds; the stored English everywhere else."""

from __future__ import annotations

import itertools
import string
from collections.abc import Iterator

import pytest
from apikit import ClientFactory
from babel import Locale
from babel.messages.pofile import read_po
from enginekit import MIN, T0, result, rule
from hypothesis import given, settings
from hypothesis import strategies as st
from markupsafe import escape

from detector.clock import ManualClock
from detector.engine import Engine, texts
from detector.model import IncidentStatus
from detector.store.sql import SqlStore
from detector.web import i18n

INVESTIGATING, IDENTIFIED = IncidentStatus.INVESTIGATING, IncidentStatus.IDENTIFIED
MONITORING, RESOLVED = IncidentStatus.MONITORING, IncidentStatus.RESOLVED
TEMPLATES = [*texts.ACTIVITIES.values(), texts.IN_MARKETS, *texts.DEFAULT_PUBLIC.values()]


def fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}


def test_english_country_names_are_babels() -> None:
    english = Locale.parse("en").territories
    # Babel's English names, with "the" where an English sentence needs it.
    assert {code: english[code] for code in texts.COUNTRIES} == {
        code: name.removeprefix("the ") for code, name in texts.COUNTRIES.items()
    }
    assert i18n.country_name("NL", "en") == texts.country("NL") == "the Netherlands"


@pytest.mark.parametrize("lang", i18n.LANGUAGES)
def test_every_translation_keeps_the_templates_fields(lang: str) -> None:
    """A translation may say {Activity} for {activity}, never a field the engine does not give
    (the page would fall back to English); and it must keep what the sentence is about."""
    path = i18n.TRANSLATIONS / lang / "LC_MESSAGES" / "messages.po"
    with path.open("rb") as handle:
        entries = {str(m.id): str(m.string) for m in read_po(handle, locale=lang) if m.id}
    for template in TEMPLATES:
        translated = entries[template] or template  # English shows the msgid
        wanted, got = fields(template), fields(translated)
        if wanted & {"activity", "Activity"}:
            wanted, got = wanted - {"Activity"} | {"activity"}, got - {"Activity"} | {"activity"}
        assert got == wanted, (lang, template, translated)


@pytest.mark.parametrize(
    ("lang", "status", "kind", "markets", "sentence"),
    [
        ("en", INVESTIGATING, "label_creation", ("DE",),
         "We are investigating problems creating labels with DHL in Germany."),
        ("es", INVESTIGATING, "label_creation", ("DE",),
         "Estamos investigando problemas para crear etiquetas con DHL en Alemania."),
        ("es", MONITORING, "label_creation", ("DE", "NL"),
         "Crear etiquetas con DHL en Alemania y Países Bajos vuelve a funcionar. "
         "Estamos supervisando los resultados."),
        ("nl", RESOLVED, "order_import", (),
         "Dit incident is opgelost: het importeren van bestellingen uit DHL werkt weer normaal."),
        ("de", IDENTIFIED, "tracking", ("NL",),
         "Eine kürzliche Änderung auf unserer Seite hat Probleme beim Abrufen von "
         "Sendungsverfolgungsdaten von DHL (Niederlande) verursacht. "
         "Wir arbeiten an einer Lösung."),
        ("fr", MONITORING, "http", (),
         "L'utilisation de DHL fonctionne à nouveau. Nous surveillons les résultats."),
        ("it", INVESTIGATING, "dns", ("IT", "FR", "CH"),  # another kind reads as http
         "Stiamo indagando su problemi riguardanti l'uso di DHL (Italia, Francia e Svizzera)."),
    ],
)  # fmt: skip
def test_default_sentences_in_each_language(
    lang: str, status: IncidentStatus, kind: str, markets: tuple[str, ...], sentence: str
) -> None:
    gettext = i18n.translations(lang).gettext
    made = texts.default_sentence(status, kind, "DHL", i18n.markets_text(markets, lang), gettext)
    assert made == sentence


@pytest.mark.parametrize("lang", i18n.LANGUAGES)
def test_every_sentence_renders_in_every_language(lang: str) -> None:
    gettext = i18n.translations(lang).gettext
    for status, kind in itertools.product(IncidentStatus, [*texts.ACTIVITIES, "other"]):
        for markets in [(), ("BE",), ("BE", "GB", "ZZ")]:
            listed = i18n.markets_text(markets, lang)
            made = texts.default_sentence(status, kind, "UPS", listed, gettext)
            assert "UPS" in made and "{" not in made and made.endswith(".")
            assert made[:1].isupper() and listed in made


def test_recognise_finds_the_kind_and_the_markets_of_any_default_sentence() -> None:
    markets = ("AT", "DE", "NL", "ZZ")  # ZZ: unknown, written as it is
    for status, kind in itertools.product(IncidentStatus, texts.ACTIVITIES):
        for size in range(len(markets) + 1):
            for chosen in itertools.combinations(markets, size):
                body = texts.default_sentence(status, kind, "DHL", texts.market_list(chosen))
                assert texts.recognise(body, status, "DHL", markets) == (kind, chosen)
    body = texts.default_sentence(INVESTIGATING, "tracking", "DHL", "Germany")
    assert texts.recognise(body, INVESTIGATING, "DHL", ("DE",)) is not None
    assert texts.recognise(body, MONITORING, "DHL", ("DE",)) is None  # another status' words
    assert texts.recognise(body, INVESTIGATING, "UPS", ("DE",)) is None
    assert texts.recognise(body, INVESTIGATING, "DHL", ("NL",)) is None  # not its market
    for other in [body[:-1], body + " ", "Labels with DHL fail in Germany.", "", "\0"]:
        assert texts.recognise(other, INVESTIGATING, "DHL", ("DE",)) is None


# ---------------------------------------------------------------------------- the real engine

OVERRIDE = "Labels with {component_name} fail in {market_list}. We are on it."
WORDS = {
    "es": ["Estamos investigando problemas para crear etiquetas con DHL en Alemania.",
           "Estamos investigando problemas para crear etiquetas con DHL en Alemania y Países "
           "Bajos."],
    "de": ["Wir untersuchen Probleme beim Erstellen von Etiketten mit DHL (Deutschland)."],
    "nl": ["We onderzoeken problemen met het aanmaken van labels bij DHL in Duitsland."],
    "fr": ["Nous enquêtons sur des problèmes concernant la création d'étiquettes avec DHL "
           "(Allemagne)."],
    "it": ["Stiamo indagando su problemi riguardanti la creazione di etichette con DHL "
           "(Germania)."],
}  # fmt: skip


def run(store: SqlStore, stop: int, start: int = 0, **ok: bool) -> None:
    """One result a minute per market into a real engine, each evaluation's decisions committed
    to the store as the daemon does (before the next evaluation changes the incident)."""
    engine = ENGINES[id(store)]
    for minute in range(start, stop):
        for market, good in ok.items():
            engine.observe(result(minute, good, market=market, probe=f"dhl-{market}"))
        out = engine.evaluate(T0 + minute * MIN)
        if out:
            store.commit_engine(out, {}, {}, T0 + minute * MIN)


ENGINES: dict[int, Engine] = {}


@pytest.fixture
def engine_store(store: SqlStore, clock: ManualClock) -> Iterator[SqlStore]:
    """The API fixtures' SQLite store, fed by a real engine; the page's clock an hour on."""
    ENGINES[id(store)] = Engine([rule(split_by=("market",))], {"carriers/dhl": "DHL"})
    clock.set(T0 + 60 * MIN)
    yield store
    del ENGINES[id(store)]


async def test_an_engine_incident_reads_in_the_readers_language(
    make_client: ClientFactory, engine_store: SqlStore
) -> None:
    run(engine_store, 35, DE=False, NL=True)
    run(engine_store, 45, start=35, DE=False, NL=False)  # NL joins: a public update
    [incident] = engine_store.list_incidents(unresolved_only=True)
    stored = [u.body for u in incident.updates]
    assert stored == [
        "We are investigating problems creating labels with DHL in Germany.",
        "We are investigating problems creating labels with DHL in Germany and the Netherlands.",
    ]
    client = await make_client()
    english = await (await client.get("/")).text()
    assert all(escape(body) in english for body in stored)  # exactly as stored
    for lang, words in WORDS.items():
        for path in ("/", f"/incidents/{incident.id}"):
            page = await (await client.get(f"{path}?lang={lang}")).text()
            assert all(escape(w) in page for w in words), (lang, path)
            assert stored[0] not in page
    # Accept-Language counts too; the v2 JSON stays as stored in any language.
    page = await (await client.get("/", headers={"Accept-Language": "es"})).text()
    assert WORDS["es"][1] in page
    summary = await (await client.get("/api/v2/incidents.json?lang=es")).json()
    bodies = [u["body"] for u in summary["incidents"][0]["incident_updates"]]
    assert sorted(bodies) == sorted(stored)

    run(engine_store, 60, start=45, DE=True, NL=True)  # monitoring, then resolved
    [incident] = engine_store.list_incidents()
    assert incident.status is RESOLVED
    page = await (await client.get(f"/incidents/{incident.id}?lang=es")).text()
    assert "Crear etiquetas con DHL en Alemania y Países Bajos vuelve a funcionar." in page
    assert "Este incidente se ha resuelto: crear etiquetas con DHL en Alemania y" in page
    feed = await (await client.get("/history.atom?lang=es")).text()
    assert "vuelve a funcionar con normalidad" in feed and "works normally" not in feed
    feed = await (await client.get("/history.rss")).text()
    assert "This incident has been resolved: creating labels with DHL in Germany and" in feed


async def test_a_rules_own_text_and_an_on_calls_stay_as_written(
    make_client: ClientFactory, engine_store: SqlStore
) -> None:
    ENGINES[id(engine_store)] = Engine(
        [rule("override", split_by=("market",), message=OVERRIDE)], {"carriers/dhl": "DHL"}
    )
    run(engine_store, 35, DE=False)
    [incident] = engine_store.list_incidents(unresolved_only=True)
    assert incident.updates[0].body == "Labels with DHL fail in Germany. We are on it."
    # An on-call writes the default's words for another component: not this incident's.
    manual = "We are investigating problems creating labels with UPS in Germany."
    engine_store.add_incident_update(incident.id, INVESTIGATING, manual, T0 + 40 * MIN)
    client = await make_client()
    for lang in i18n.LANGUAGES:
        page = await (await client.get(f"/incidents/{incident.id}?lang={lang}")).text()
        assert "Labels with DHL fail in Germany. We are on it." in page, lang
        assert manual in page, lang


def test_a_broken_translation_shows_the_stored_english(monkeypatch: pytest.MonkeyPatch) -> None:
    """A translator's unknown field would raise at render time: the page shows English."""

    class Broken:
        @staticmethod
        def gettext(message: str) -> str:
            return "{oops} " + message

    monkeypatch.setattr(i18n, "translations", lambda lang: Broken)
    i18n._sentence.cache_clear()
    body = "We are investigating problems using DHL."
    try:
        found = i18n._sentence(body, INVESTIGATING, ("DHL",), (), "es")
    finally:
        i18n._sentence.cache_clear()
    assert found == body


CODES = st.sampled_from([*texts.COUNTRIES, "ZZ", "XK"])


@settings(max_examples=300, deadline=None)
@given(
    status=st.sampled_from(IncidentStatus),
    kind=st.sampled_from([*texts.ACTIVITIES, "dns"]),
    name=st.text(min_size=1, max_size=30),
    markets=st.lists(CODES, unique=True, max_size=5),
    extra=st.lists(CODES, max_size=3),
)
def test_recognise_round_trips_any_name_and_markets(
    status: IncidentStatus, kind: str, name: str, markets: list[str], extra: list[str]
) -> None:
    """Any component name (", ", " and ", " in ", braces) and any markets: the sentence is found,
    and what is found rebuilds exactly the stored words, so a translation says the same."""
    chosen = tuple(sorted(markets))
    body = texts.default_sentence(status, kind, name, texts.market_list(chosen))
    found = texts.recognise(body, status, name, {*chosen, *extra})
    assert found is not None
    again = texts.default_sentence(status, found[0], name, texts.market_list(found[1]))
    assert again == body and found[1] == chosen
