"""Snapshots of the public read path: `/` and `/api/v2/*.json` rendered once and served to
every reader until something changes, because the page is read hardest during an outage.

A snapshot is the body of one response (plain and gzip-compressed), its ETag and content
type, keyed by path, language and base URL. It is rendered afresh after an accepted write
(`invalidate`: the writer reads what it wrote), after a pipeline commit (`refresh`: readers
keep the current one while one reader renders the next, if it is at most `REFRESH_GRACE`
old), when a maintenance window starts or ends (`valid_until`), and at the latest after
`max_age` seconds ("Updated <time>" moves on). A crowd arriving at a missing snapshot waits
for one rendering, not one each.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog
from aiohttp import web

from detector.clock import Clock

log = structlog.get_logger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Key = tuple[str, ...]
# Seconds a snapshot lives without a change: every change renders afresh anyway, so this only
# moves "Updated <time>" on; each rendering costs tens of ms of CPU at the crowd's expense.
DEFAULT_MAX_AGE = 30.0
CACHE_SECONDS = 5  # Cache-Control max-age: browsers and proxies ask again this soon
# How old a snapshot may be and still be served after a commit changed what it shows, while a
# new one renders: under a crowd snapshots are seconds old, so nobody waits; after a quiet
# spell the first reader waits for one rendering rather than read a minute-old status.
REFRESH_GRACE = float(CACHE_SECONDS)
_KEPT_HEADERS = ("Content-Type", "Content-Language", "Vary")
_MAX_SNAPSHOTS = 256  # languages x paths x hosts; beyond this (odd Host headers) start over


@dataclass(frozen=True, slots=True)
class Rendered:
    body: bytes
    gzipped: bytes
    etag: str
    headers: tuple[tuple[str, str], ...]
    generation: int
    rendered_at: float
    started: int  # the rendering's sequence number: later than a refresh() means current
    valid_until: float
    at_boundary: bool  # valid_until is a maintenance boundary, not just max_age


class Snapshots:
    def __init__(
        self,
        clock: Clock,
        *,
        max_age: float = DEFAULT_MAX_AGE,
        boundary: Callable[[float], Awaitable[float | None]] | None = None,
    ) -> None:
        """`boundary(now)`: the next time the public view changes by itself (a maintenance
        window starting or ending), or None."""
        self.clock = clock
        self.max_age = max_age
        self.boundary = boundary
        self.generation = 0
        self._sequence = 0
        self._refreshed_at = 0  # renderings started up to this sequence number are aged
        self.builds = 0  # how many responses were rendered (tests and the bench read it)
        self._kept: dict[Key, Rendered] = {}
        self._building: dict[Key, asyncio.Future[Rendered]] = {}
        self._refreshing: set[asyncio.Task[Rendered]] = set()

    def invalidate(self) -> None:
        """Something public changed: the next reader renders afresh (after a write, so the
        writer reads what it wrote)."""
        self.generation += 1
        self._kept.clear()

    def refresh(self) -> None:
        """Something public changed, and a reader may see it a rendering later (the pipeline's
        commits): the crowd keeps getting the current snapshot while one reader renders."""
        self._refreshed_at = self._sequence

    async def settled(self) -> None:
        """Waits for the renderings running in the background (tests, shutdown)."""
        await asyncio.gather(*self._refreshing, return_exceptions=True)

    def _fresh(self, rendered: Rendered) -> bool:
        return (
            rendered.generation == self.generation
            and rendered.started > self._refreshed_at
            and self.clock.now() < rendered.valid_until
        )

    def _servable(self, rendered: Rendered) -> bool:
        """Aged or refreshed but still fine to serve while a new one renders."""
        now = self.clock.now()
        if rendered.started <= self._refreshed_at:  # a commit since: it may miss a change
            return now < rendered.rendered_at + REFRESH_GRACE
        return not rendered.at_boundary and now < rendered.valid_until + self.max_age

    async def get(self, key: Key, request: web.Request, handler: Handler) -> Rendered:
        rendered = self._kept.get(key)
        if rendered is not None and self._fresh(rendered):
            return rendered
        pending = self._building.get(key)
        if rendered is not None and self._servable(rendered):  # serve it while one renders
            if pending is None:
                task = asyncio.create_task(self._rebuild(key, self._claim(key), request, handler))
                self._refreshing.add(task)
                task.add_done_callback(self._refreshed)
            return rendered
        if pending is not None:
            return await asyncio.shield(pending)
        return await self._rebuild(key, self._claim(key), request, handler)

    def _claim(self, key: Key) -> asyncio.Future[Rendered]:
        """Marks `key` as being rendered, before anything awaits: one rendering per key."""
        future: asyncio.Future[Rendered] = asyncio.get_running_loop().create_future()
        self._building[key] = future
        return future

    def _refreshed(self, task: asyncio.Task[Rendered]) -> None:
        self._refreshing.discard(task)
        if not task.cancelled() and task.exception() is not None:  # the next reader retries
            log.warning("snapshot.refresh_failed", error=str(task.exception()))

    async def _rebuild(
        self, key: Key, future: asyncio.Future[Rendered], request: web.Request, handler: Handler
    ) -> Rendered:
        try:
            rendered = await self._build(request, handler)
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it, nobody else must
            raise
        except BaseException:
            future.cancel()
            raise
        finally:
            del self._building[key]
        future.set_result(rendered)
        if rendered.generation == self.generation:  # not invalidated while rendering
            if len(self._kept) >= _MAX_SNAPSHOTS:
                self._kept.clear()
            self._kept[key] = rendered
        return rendered

    async def _build(self, request: web.Request, handler: Handler) -> Rendered:
        generation, now = self.generation, self.clock.now()
        self._sequence += 1
        started = self._sequence
        response = await handler(request)
        if not isinstance(response, web.Response) or response.status != 200:
            raise _NotCacheable(request, response)
        body = bytes(response.body or b"")  # type: ignore[arg-type]
        headers = tuple(
            (name, response.headers[name]) for name in _KEPT_HEADERS if name in response.headers
        )
        valid_until, at_boundary = now + self.max_age, False
        if self.boundary is not None:
            upcoming = await self.boundary(now)
            if upcoming is not None and now < upcoming <= valid_until:
                valid_until, at_boundary = upcoming, True
        self.builds += 1
        gzipped = await asyncio.to_thread(gzip.compress, body, 6, mtime=0)
        etag = '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'
        return Rendered(
            body, gzipped, etag, headers, generation, now, started, valid_until, at_boundary
        )

    def serve(self, key_of: Callable[[web.Request], Key], handler: Handler) -> Handler:
        """The handler, served from snapshots: ETag/If-None-Match, Cache-Control, gzip."""

        async def cached(request: web.Request) -> web.StreamResponse:
            try:
                rendered = await self.get(key_of(request), request, handler)
            except _NotCacheable as exc:
                if exc.request is request:
                    return exc.response
                return await handler(request)  # a waiter: its own response, uncached
            return respond(rendered, request)

        return cached


class _NotCacheable(Exception):
    def __init__(self, request: web.Request, response: web.StreamResponse) -> None:
        super().__init__("not cacheable")
        self.request, self.response = request, response


def respond(rendered: Rendered, request: web.Request) -> web.Response:
    headers = {
        **dict(rendered.headers),
        "ETag": rendered.etag,
        "Cache-Control": f"public, max-age={CACHE_SECONDS}",
    }
    vary = [v.strip() for v in headers.get("Vary", "").split(",") if v.strip()]
    headers["Vary"] = ", ".join([*vary, "Accept-Encoding"])
    if _matches(request.headers.get("If-None-Match", ""), rendered.etag):
        headers.pop("Content-Type", None)
        return web.Response(status=304, headers=headers)
    if _accepts_gzip(request.headers.get("Accept-Encoding", "")):
        headers["Content-Encoding"] = "gzip"
        return web.Response(body=rendered.gzipped, headers=headers)
    return web.Response(body=rendered.body, headers=headers)


def _matches(if_none_match: str, etag: str) -> bool:
    tags = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]
    return "*" in tags or etag in tags


def _accepts_gzip(accept_encoding: str) -> bool:
    for part in accept_encoding.lower().split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip() in ("gzip", "*"):
            q = params.strip().removeprefix("q=").strip()
            try:
                return not q or float(q) > 0
            except ValueError:
                return False
    return False
