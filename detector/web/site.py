"""The public HTML site and its feeds, as aiohttp handlers: `/`, `/history`,
`/history/<YYYY-MM>`, `/incidents/<id>`, `/history.atom`, `/history.rss`.

Reads go to the store in a worker thread; a driver error is a StoreError to the app's error
middleware (503 JSON), an unknown month or incident a 404. The language is `?lang=`, then
Accept-Language, then the configured `page_language`.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TypeVar

from aiohttp import web

from detector.clock import Clock
from detector.model import Incident
from detector.store.base import NotFound, Store, StoreError
from detector.web import i18n
from detector.web.feeds import FeedKind, render_feed
from detector.web.history import (
    DAY,
    HISTORY_DAYS,
    day_start,
    month_bounds,
    month_of,
    next_month,
)
from detector.web.history import component_history as history_of
from detector.web.page import (
    render_history_month,
    render_incident_page,
    render_status_page,
    warm,
)
from detector.web.statuspage import PageInfo, Snapshot

T = TypeVar("T")
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_INCIDENT_ID = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
FEED_LIMIT = 50
MONTH_LIMIT = 1000
FEED_TYPES = {"atom": "application/atom+xml", "rss": "application/rss+xml"}


@dataclass
class Site:
    store: Store
    clock: Clock
    page: PageInfo
    language: str = i18n.DEFAULT_LANGUAGE

    def __post_init__(self) -> None:
        warm(self.language)  # once per language and process, before the first reader

    # ------------------------------------------------------------------ plumbing

    def _lang(self, request: web.Request) -> str:
        accept = request.headers.get("Accept-Language")
        return i18n.choose_language(request.query.get("lang"), accept, self.language)

    def _page_info(self, request: web.Request) -> PageInfo:
        if self.page.url:
            return self.page
        return replace(self.page, url=f"{request.scheme}://{request.host}")

    async def _read(self, read: Callable[[], T]) -> T:
        try:
            return await asyncio.to_thread(read)
        except StoreError:
            raise
        except Exception as exc:  # a driver error is a store error to the reader
            raise StoreError(f"{type(exc).__name__}: {exc}") from exc

    @staticmethod
    def _html(text: str, lang: str) -> web.Response:
        response = web.Response(text=text, content_type="text/html", charset="utf-8")
        response.headers["Content-Language"] = lang
        response.headers["Vary"] = "Accept-Language"
        return response

    # ------------------------------------------------------------------ pages

    async def index(self, request: web.Request) -> web.Response:
        lang, page, now = self._lang(request), self._page_info(request), self.clock.now()
        since = day_start(now) - (HISTORY_DAYS - 1) * DAY

        def read() -> Snapshot:
            incidents = self.store.list_incidents(active_since=since, limit=10_000)
            maintenances = self.store.list_maintenances(ending_after=since)
            components = self.store.list_components()
            return Snapshot(page, now, components, incidents, maintenances)

        snapshot = await self._read(read)
        histories = {
            c.id: history_of(c.id, snapshot.incidents, snapshot.maintenances, now)
            for c in snapshot.components
        }
        return self._html(render_status_page(snapshot, lang=lang, histories=histories), lang)

    async def history(self, request: web.Request) -> web.Response:
        lang, page, now = self._lang(request), self._page_info(request), self.clock.now()
        current = month_of(now)
        month = current
        if "month" in request.match_info:
            found = _MONTH.match(request.match_info["month"])
            if found is None or not 1 <= int(found.group(2)) <= 12:
                raise web.HTTPNotFound()
            month = (int(found.group(1)), int(found.group(2)))
            if not (1970, 1) <= month <= current:
                raise web.HTTPNotFound()
        start, end = month_bounds(*month)

        def read() -> tuple[Snapshot, list[Incident]]:
            incidents = self.store.list_incidents(
                active_since=start, opened_before=end, limit=MONTH_LIMIT
            )
            older = self.store.list_incidents(opened_before=start, limit=1)
            components = self.store.list_components()
            return Snapshot(page, now, components, incidents), older

        snapshot, older = await self._read(read)
        html = render_history_month(
            snapshot,
            month,
            older=month_of(older[0].opened_at) if older else None,
            newer=next_month(*month) if month < current else None,
            lang=lang,
        )
        return self._html(html, lang)

    async def incident(self, request: web.Request) -> web.Response:
        lang, page, now = self._lang(request), self._page_info(request), self.clock.now()
        incident_id = request.match_info["id"]
        if _INCIDENT_ID.match(incident_id) is None:
            raise web.HTTPNotFound()

        def read() -> Snapshot:
            incident = self.store.get_incident(incident_id)
            return Snapshot(page, now, self.store.list_components(), [incident])

        try:
            snapshot = await self._read(read)
        except NotFound:
            raise web.HTTPNotFound() from None
        return self._html(render_incident_page(snapshot, snapshot.incidents[0], lang=lang), lang)

    def feed(self, kind: FeedKind) -> Callable[[web.Request], asyncio.Future[web.Response]]:
        async def handler(request: web.Request) -> web.Response:
            lang, page, now = self._lang(request), self._page_info(request), self.clock.now()

            def read() -> tuple[Snapshot, list[Incident]]:
                # the components' names let the feed show default sentences translated
                components = self.store.list_components()
                return Snapshot(page, now, components), self.store.list_incidents(limit=FEED_LIMIT)

            snapshot, incidents = await self._read(read)
            body = render_feed(snapshot, incidents, page.url, kind, lang)
            response = web.Response(body=body, content_type=FEED_TYPES[kind], charset="utf-8")
            response.headers["Vary"] = "Accept-Language"
            return response

        return handler  # type: ignore[return-value]
