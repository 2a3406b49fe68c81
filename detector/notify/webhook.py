"""`webhook`: the contract JSON (DESIGN "Notifications"), signed with HMAC-SHA256."""

from __future__ import annotations

import hashlib
import hmac

import orjson

from detector.notify.config import Channel
from detector.notify.http import Context, request
from detector.notify.payload import contract_body
from detector.store.outbox import Delivery


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class Webhook:
    def __init__(self, channel: Channel, context: Context) -> None:
        self.channel = channel
        self.context = context
        self.secret = channel.secret()

    async def send(self, delivery: Delivery) -> None:
        audience = self.channel.audience or "oncall"
        body = orjson.dumps(
            contract_body(delivery.event, delivery.id, delivery.at, delivery.body, audience)
        )
        headers = {
            "X-Detector-Signature": signature(self.secret, body),
            "X-Detector-Event": delivery.event,
            "X-Detector-Delivery": delivery.id,
        }
        await request(
            self.context.session,
            "POST",
            self.channel.url,
            data=body,
            headers=headers,
            timeout=self.channel.timeout,
        )
