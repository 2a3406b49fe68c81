"""The status page in a real browser: Debian's chromium driven by playwright through
`executable_path` (no browser download). Each state — all operational, an incident open in
one market, a maintenance, Spanish — is asserted on the rendered DOM with no console error
(a CSP violation is one), and saved as a screenshot under var/screenshots/ to look at."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from apikit import NOW, TOKEN, StoreControl, commit, open_incident
from debian import require_binary
from playwright.async_api import Browser, Page, async_playwright

from detector.clock import ManualClock
from detector.metrics import Metrics
from detector.model import Maintenance
from detector.store.sql import SqlStore
from detector.web.app import make_app

SCREENSHOTS = Path(__file__).resolve().parent.parent / "var" / "screenshots"
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip
ServerFactory = Callable[[web.Application], Awaitable[TestServer]]


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    executable = require_binary("chromium", "chromium")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=executable, args=FLAGS)
        yield launched
        await launched.close()


@pytest.fixture
async def base_url(aiohttp_server: ServerFactory, store: SqlStore, clock: ManualClock) -> str:
    app = make_app(store=store, control=StoreControl(store, clock), metrics=Metrics("test"),
                   clock=clock, token=TOKEN, page_name="Sendcloud status")  # fmt: skip
    server = await aiohttp_server(app)
    return str(server.make_url("")).rstrip("/")


async def visit(
    browser: Browser, url: str, name: str, *, width: int = 1024, height: int = 900, **options: Any
) -> tuple[Page, list[str]]:
    """Opens `url`, collecting console errors and page errors; saves a full-page screenshot."""
    page = await browser.new_page(viewport={"width": width, "height": height}, **options)
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    response = await page.goto(url)
    assert response is not None and response.status == 200
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
    return page, problems


def component(page: Page, public_id: str, selector: str) -> str:
    return f"[id='{public_id}'] {selector}"


async def contrast(page: Page, selector: str) -> float:
    """WCAG contrast ratio of an element's text colour on its background (or the page's)."""
    ratio: float = await page.eval_on_selector(
        selector,
        """element => {
          const rgb = s => s.match(/[\\d.]+/g).slice(0, 3).map(Number);
          const lum = c => { const [r, g, b] = c.map(v => { v /= 255;
            return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
            return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
          const style = getComputedStyle(element);
          let background = style.backgroundColor;
          if (background === 'rgba(0, 0, 0, 0)') background = 'rgb(255, 255, 255)';
          const [a, b] = [lum(rgb(style.color)), lum(rgb(background))];
          return (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
        }""",
    )
    return ratio


async def test_all_operational(browser: Browser, base_url: str) -> None:
    page, problems = await visit(browser, f"{base_url}/", "operational")
    assert await page.locator("html").get_attribute("lang") == "en"
    assert await page.locator("p.banner").inner_text() == "All Systems Operational"
    assert await page.locator("script").count() == 0
    for landmark in ("header", "main", "footer", "nav"):
        assert await page.locator(landmark).count() >= 1
    assert await page.locator("section.group h3 > span:first-child").all_inner_texts() == [
        "Sendcloud platform", "Carriers", "Integrations",
    ]  # fmt: skip
    dhl = component(page, "carriers.dhl", "")
    assert await page.locator(f"{dhl} .row .status").inner_text() == "Operational"
    assert await page.locator(f"{dhl} ol.bars li").count() == 90
    assert await page.locator(f"{dhl} .scale").inner_text() != ""
    assert await contrast(page, "p.banner") >= 4.5
    assert await contrast(page, f"{dhl} .row .status") >= 4.5
    assert problems == []


async def test_an_incident_open_in_one_market_on_a_phone(
    browser: Browser, base_url: str, store: SqlStore
) -> None:
    commit(store, open_incident())
    page, problems = await visit(browser, f"{base_url}/", "incident-phone", width=390, height=844)
    assert await page.locator("p.banner").inner_text() == "Major Service Outage"
    assert await contrast(page, "p.banner") >= 4.5
    article = page.locator("#incident-inc-1")
    assert "Markets: Germany" in await article.locator("p.meta").inner_text()
    assert await article.locator("ol.timeline .body").all_inner_texts() == ["Labels fail."]
    dhl = component(page, "carriers.dhl", "")
    assert await page.locator(f"{dhl} .row .status").inner_text() == "Major outage"
    bars = page.locator(f"{dhl} ol.bars li")
    today = bars.last
    assert await today.get_attribute("class") == "bar-major_outage hatched"
    assert "30 min major outage" in await today.inner_text()  # the text alternative
    # a phone shows the last 30 days, and nothing overflows sideways
    assert await bars.nth(59).is_hidden() and await bars.nth(60).is_visible()
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390
    assert problems == []
    await visit(browser, f"{base_url}/", "incident")


async def test_a_maintenance(browser: Browser, base_url: str, store: SqlStore) -> None:
    store.add_maintenance(Maintenance(NOW - 600, NOW + 3000, ("carriers/ups",), "UPS upgrade"))
    store.add_maintenance(Maintenance(NOW + 86400, NOW + 90000, ("sendcloud/api",), "API work"))
    page, problems = await visit(browser, f"{base_url}/", "maintenance")
    section = page.locator("section[aria-labelledby='maintenance']")
    assert await section.locator("h3").all_inner_texts() == ["UPS upgrade", "API work"]
    metas = await section.locator("p.meta").all_inner_texts()
    assert metas[0].startswith("In progress") and metas[2].startswith("Scheduled")
    today = page.locator(component(page, "carriers.ups", "ol.bars li")).last
    assert await today.get_attribute("class") == "bar-under_maintenance hatched"
    assert problems == []


async def test_spanish(browser: Browser, base_url: str, store: SqlStore) -> None:
    commit(store, open_incident())
    page, problems = await visit(
        browser, f"{base_url}/", "spanish", extra_http_headers={"Accept-Language": "es-ES,es"}
    )
    assert await page.locator("html").get_attribute("lang") == "es"
    assert await page.locator("p.banner").inner_text() == "Interrupción mayor del servicio"
    dhl = component(page, "carriers.dhl", "")
    assert await page.locator(f"{dhl} .row .status").inner_text() == "Interrupción mayor"
    assert "Mercados: Alemania" in await page.locator("#incident-inc-1 p.meta").inner_text()
    legend = await page.locator("ul.legend li").all_inner_texts()
    assert legend == [
        "Operativo", "Rendimiento degradado", "Interrupción parcial", "Interrupción mayor",
        "En mantenimiento",
    ]  # fmt: skip
    await page.click("text=Historial")
    assert await page.locator("h2#month").inner_text() == "Incidencias en noviembre 2026"
    await page.click("#incident-inc-1 h3 a")
    assert page.url.endswith("/incidents/inc-1")
    assert problems == []
