"""`/unsubscribe/<token>`: an email subscriber leaves a notification channel's list.

POST is RFC 8058 one-click (mail clients, with `List-Unsubscribe-Post`); GET is the link a
person clicks in the message. Both are idempotent: a token keeps meaning its address.
"""

from __future__ import annotations

import asyncio
import html
from typing import Protocol

from aiohttp import web

from detector.clock import Clock

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title></head>
<body><h1>{title}</h1><p>{text}</p></body></html>
"""


class Unsubscriber(Protocol):
    def unsubscribe(self, token: str, now: float) -> str | None: ...


def add_routes(app: web.Application, store: object, clock: Clock) -> None:
    if not hasattr(store, "unsubscribe"):
        return  # a store without subscribers sends no email either
    handler = _Unsubscribe(store, clock)
    app.router.add_routes(
        [
            web.get("/unsubscribe/{token}", handler.handle),
            web.post("/unsubscribe/{token}", handler.handle),
        ]
    )


class _Unsubscribe:
    def __init__(self, store: Unsubscriber, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    async def handle(self, request: web.Request) -> web.Response:
        token = request.match_info["token"]
        address = None
        if 8 <= len(token) <= 128:
            address = await asyncio.to_thread(self.store.unsubscribe, token, self.clock.now())
        if address is None:
            page = _PAGE.format(
                title="Unknown link", text="This unsubscribe link is not known here."
            )
            return web.Response(text=page, status=404, content_type="text/html")
        text = f"{html.escape(address)} will get no more notification emails."
        return web.Response(
            text=_PAGE.format(title="Unsubscribed", text=text), content_type="text/html"
        )
