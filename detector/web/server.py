"""Serving the app for the daemon: an aiohttp AppRunner and TCPSite with limits for the open
internet in front of a status page.

* A client must send a request's headers within `header_timeout` (aiohttp's keep-alive timer
  is armed when a connection opens and when a response ends, and closes a connection still
  waiting for a request then), so connections trickling headers cannot pile up.
* At most `max_connections` open connections: one more is closed at once.
* Request line and header fields are bounded; a request the parser refuses (bad request line,
  a 100 KB URL) is answered `400 {"error": ...}` as JSON, logged at debug without a traceback.
* Responses say `Server: detector`, not which Python and aiohttp versions run it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import orjson
from aiohttp import web
from aiohttp.http_exceptions import BadHttpMethod, BadStatusLine, InvalidHeader, LineTooLong
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

SERVER_NAME = "detector"


@dataclass(frozen=True)
class Limits:
    header_timeout: float = 10.0
    max_connections: int = 1000
    max_line_size: int = 8190  # request line, e.g. the URL
    max_field_size: int = 8190  # one header


class _GuardedHandler(RequestHandler):
    max_connections = 1000

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        manager = self._manager
        if manager is not None and len(manager.connections) > self.max_connections:
            self.force_close()
            transport.close()

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status >= 500:
            self.log_exception("http_internal_error", exc_info=exc)
        else:  # the client's fault: nothing to fix on our side, no traceback
            self.logger.debug("http_bad_request: %s", _first_line(message or str(exc or "")))
        if request.writer.output_size > 0:
            raise ConnectionError("response already started; cannot send the error")
        response = web.Response(
            body=orjson.dumps({"error": _describe(status, exc)}),
            status=status,
            content_type="application/json",
            headers={"Server": SERVER_NAME},
        )
        response.force_close()
        return response


def _describe(status: int, exc: BaseException | None) -> str:
    # Fixed words, never the client's bytes echoed back.
    if status >= 500:
        return "internal error"
    if isinstance(exc, LineTooLong):
        return "bad request: request line or header field too long"
    if isinstance(exc, BadStatusLine | BadHttpMethod):
        return "bad request: malformed request line"
    if isinstance(exc, InvalidHeader):
        return "bad request: malformed header"
    try:
        return f"bad request: {HTTPStatus(status).phrase.lower()}"
    except ValueError:
        return "bad request"


def _first_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line[:200]


class _GuardedServer(web.Server):
    def __init__(self, base: web.Server, handler_class: type[RequestHandler], **kwargs: Any):
        super().__init__(
            base.request_handler,
            request_factory=base.request_factory,
            handler_cancellation=base.handler_cancellation,
            **kwargs,
        )
        self._handler_class = handler_class
        self._handler_kwargs = kwargs

    def __call__(self) -> RequestHandler:
        return self._handler_class(self, loop=self._loop, **self._handler_kwargs)


class GuardedRunner(web.AppRunner):
    """An AppRunner whose connections use `_GuardedHandler` under `limits`."""

    def __init__(self, app: web.Application, limits: Limits) -> None:
        super().__init__(
            app,
            access_log=None,
            keepalive_timeout=limits.header_timeout,
            max_line_size=limits.max_line_size,
            max_field_size=limits.max_field_size,
        )
        self.limits = limits

    async def _make_server(self) -> web.Server:
        base = await super()._make_server()
        handler_class = type(
            "GuardedHandler", (_GuardedHandler,), {"max_connections": self.limits.max_connections}
        )
        kwargs = {
            "access_log": None,
            "keepalive_timeout": self.limits.header_timeout,
            "max_line_size": self.limits.max_line_size,
            "max_field_size": self.limits.max_field_size,
        }
        return _GuardedServer(base, handler_class, **kwargs)


async def _server_header(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["Server"] = SERVER_NAME


async def start_server(
    app: web.Application, host: str, port: int, limits: Limits
) -> tuple[web.AppRunner, int]:
    """Serve `app` on host:port (0 = any free port); returns the runner and the bound port.
    On failure (port in use, bad address) everything set up is cleaned and OSError raised."""
    app.on_response_prepare.append(_server_header)
    runner = GuardedRunner(app, limits)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    addresses = runner.addresses
    bound = int(addresses[0][1]) if addresses else port
    return runner, bound


__all__ = ["GuardedRunner", "Limits", "start_server"]
