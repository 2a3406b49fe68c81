"""What every channel shares: the delivery error, one HTTP call with a hard timeout, and how
an answer maps to delivered / retry later / give up."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

import aiohttp
import orjson

from detector.store.outbox import Delivery


class DeliveryError(Exception):
    """One failed attempt. `permanent`: retrying cannot help (HTTP 4xx). Never holds a secret
    (channel URLs can be secrets themselves, e.g. Slack's: messages never quote them)."""

    def __init__(
        self, message: str, *, retry_after: float | None = None, permanent: bool = False
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.permanent = permanent


class Sender(Protocol):
    async def send(self, delivery: Delivery) -> None:
        """Deliver or raise DeliveryError."""


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """`Retry-After` as seconds: delta-seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return max(0.0, moment - (time.time() if now is None else now))


# Rate limited (420 is Statuspage's older spelling of 429), timed out, or the server's fault.
_TRANSIENT = {408, 420, 425, 429}


async def request(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    body: Any = None,
    data: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float,
) -> tuple[int, bytes]:
    """One call; the answer when it is 2xx, else DeliveryError (transient or permanent)."""
    payload = data if data is not None else None if body is None else orjson.dumps(body)
    wanted = {"Content-Type": "application/json", **(headers or {})} if payload else headers
    try:
        async with asyncio.timeout(timeout):
            async with session.request(method, url, data=payload, headers=wanted) as response:
                text = await response.read()
                status = response.status
                after = retry_after(response.headers.get("Retry-After"))
    except TimeoutError:
        raise DeliveryError(f"{method} timed out after {timeout:g}s") from None
    except aiohttp.ClientError as exc:
        raise DeliveryError(f"{method} failed: {type(exc).__name__}") from None
    if 200 <= status < 300:
        return status, text
    reason = f"HTTP {status}: {text[:200].decode(errors='replace').strip()}"
    if status in _TRANSIENT or status >= 500:
        raise DeliveryError(reason, retry_after=after)
    raise DeliveryError(reason, permanent=True)


class Context(Protocol):
    """What a channel may use besides its config (the dispatcher is one)."""

    session: aiohttp.ClientSession
    link: str  # the status page's public base URL
    page_name: str
