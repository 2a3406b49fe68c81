"""Languages: every catalog has every message the code and templates use, the language a
request gets, country names, and the default public incident sentences."""

from __future__ import annotations

from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from detector.model import ComponentStatus
from detector.web import i18n

ROOT = Path(__file__).resolve().parent.parent
METHODS = [("detector/web/**.py", "python"), ("detector/web/templates/**.html", "jinja2")]
METHODS += [("detector/engine/texts.py", "python")]  # the default sentences: babel.cfg
KEYWORDS = {"_": None, "gettext": None, "N_": None}


def extracted() -> set[str]:
    """What `make catalogs` extracts (babel.cfg): the messages the page can show."""
    found = extract_from_dir(str(ROOT), METHODS, keywords=KEYWORDS)
    return {message for _, _, message, _, _ in found if isinstance(message, str)}


def catalog(lang: str) -> dict[str, str]:
    path = i18n.TRANSLATIONS / lang / "LC_MESSAGES" / "messages.po"
    with path.open("rb") as handle:
        po = read_po(handle, locale=lang)
    return {str(m.id): str(m.string) for m in po if m.id and not m.fuzzy}


def test_extraction_sees_the_page_the_sentences_and_the_labels() -> None:
    messages = extracted()
    assert len(messages) > 50
    assert {"Open incidents", "Major outage", "creating labels with {name}"} <= messages
    assert "We are investigating problems {activity}." in messages


@pytest.mark.parametrize("lang", i18n.LANGUAGES)
def test_every_catalog_has_every_message(lang: str) -> None:
    messages, entries = extracted(), catalog(lang)
    missing = sorted(messages - set(entries))
    assert missing == [], f"{lang} catalog misses {missing}: run `make catalogs` and translate"
    if lang != "en":  # English shows the msgid itself
        untranslated = sorted(m for m in messages if not entries[m])
        assert untranslated == [], f"{lang} catalog has no translation for {untranslated}"
        for message in messages:  # a lost %(name)s would raise KeyError on the page
            assert message.count("%(") == entries[message].count("%("), (lang, message)


def test_a_catalog_missing_a_string_is_caught(tmp_path: Path) -> None:
    """The check above is not vacuous: a catalog without one message fails it."""
    entries = catalog("es")
    del entries["Open incidents"]
    assert sorted(extracted() - set(entries)) == ["Open incidents"]


def test_status_labels_are_the_one_status_word_table() -> None:
    for status, label in i18n.STATUS_LABELS.items():
        assert label == status.words.capitalize()


def test_spanish_component_status_names_are_the_designs() -> None:
    _ = i18n.translations("es").gettext
    names = [_(i18n.STATUS_LABELS[status]) for status in ComponentStatus]
    assert names == [
        "Operativo",
        "Rendimiento degradado",
        "Interrupción parcial",
        "Interrupción mayor",
        "En mantenimiento",
    ]


@pytest.mark.parametrize(
    ("query", "accept", "default", "chosen"),
    [
        ("es", "de", "en", "es"),  # ?lang= first
        ("ES", None, "en", "es"),
        ("xx", "nl-NL,nl;q=0.9,en;q=0.8", "en", "nl"),  # unknown ?lang= falls to the header
        (None, "fr-CH, fr;q=0.9, en;q=0.8, de;q=0.7, *;q=0.5", "en", "fr"),
        (None, "da, en-GB;q=0.8, de;q=0.9", "es", "de"),  # the best we have, by weight
        (None, "it;q=0.5, nl;q=0.5", "en", "it"),  # equal weights: the first listed
        (None, "de;q=0, pt", "it", "it"),  # q=0 means "not this one"
        (None, "de;q=abc, ;;, \x00", "nl", "nl"),  # junk is ignored, never an error
        (None, None, "de", "de"),
        (None, "x" * 100_000, "en", "en"),
    ],
)
def test_language_choice(query: str | None, accept: str | None, default: str, chosen: str) -> None:
    assert i18n.choose_language(query, accept, default) == chosen


def test_markets_as_country_names_in_the_language() -> None:
    assert i18n.markets_text(("DE", "NL"), "en") == "Germany and the Netherlands"
    assert i18n.markets_text(("DE", "NL"), "es") == "Alemania y Países Bajos"
    assert i18n.markets_text(("de",), "fr") == "Allemagne"
    assert i18n.country_name("ZZZ", "de") == "ZZZ"  # a code Babel does not know stays
    assert i18n.language_name("es") == "Español"


# The default sentences in each language: tests/test_i18n_sentences.py


def test_page_language_in_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from test_settings import GOOD

    from detector.settings import ConfigError, load_settings

    monkeypatch.setenv("CFG_USER", "probe")
    monkeypatch.setenv("CFG_PASS", "hunter2-secret")
    monkeypatch.chdir(tmp_path)
    Path("cfg.yaml").write_text(GOOD)
    assert load_settings("cfg.yaml").page_language == "en"
    Path("cfg.yaml").write_text(GOOD + "page_language: es\n")
    assert load_settings("cfg.yaml").page_language == "es"
    Path("cfg.yaml").write_text(GOOD + "page_language: pt\n")
    with pytest.raises(ConfigError) as raised:
        load_settings("cfg.yaml")
    assert str(raised.value).startswith("cfg.yaml:9: page_language: ")
    assert "'en', 'es', 'nl', 'de', 'fr' or 'it'" in str(raised.value)
