"""`email`: SMTP with STARTTLS, public text only, one message per change to each subscriber,
each with its own unsubscribe link (`/unsubscribe/<token>`, RFC 8058 one-click)."""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any, Protocol
from urllib.parse import urlsplit

from detector.notify.config import Channel
from detector.notify.http import Context, DeliveryError
from detector.notify.text import detail, headline
from detector.store.outbox import Delivery


class Subscribers(Protocol):
    def subscribers(self, channel: str, addresses: list[str]) -> dict[str, str]: ...


def message(
    channel: Channel, delivery: Delivery, address: str, token: str, link: str, page: str
) -> EmailMessage:
    body: dict[str, Any] = dict(delivery.body)
    mail = EmailMessage()
    mail["Subject"] = f"[{page}] {headline(delivery.event, body)}"
    mail["From"] = channel.sender
    mail["To"] = address
    mail["Date"] = formatdate(delivery.at)
    # The same id on a retry: mail clients fold a repeated message into one.
    mail["Message-ID"] = make_msgid(idstring=f"{delivery.id}.{token[:8]}", domain="detector")
    unsubscribe = f"{link.rstrip('/')}/unsubscribe/{token}"
    mail["List-Unsubscribe"] = f"<{unsubscribe}>"
    mail["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    text = [headline(delivery.event, body), "", detail(body, "public")]
    text += ["", f"Status page: {link}", f"Unsubscribe: {unsubscribe}"]
    mail.set_content("\n".join(text).strip() + "\n")
    return mail


class Email:
    def __init__(self, channel: Channel, context: Context, store: Subscribers) -> None:
        self.channel = channel
        self.context = context
        self.store = store
        self.password = channel.secret() if channel.secret_env or channel.secret_file else ""
        parts = urlsplit(channel.url)  # checked by Channel: smtp://host[:port]
        self.host, self.port = parts.hostname or "", parts.port or 587

    async def send(self, delivery: Delivery) -> None:
        tokens = await asyncio.to_thread(self.store.subscribers, self.channel.name, self.channel.to)
        link = self.channel.link or self.context.link
        mails = [
            message(self.channel, delivery, address, token, link, self.context.page_name)
            for address, token in sorted(tokens.items())
        ]
        if not mails:
            return
        try:
            budget = self.channel.attempt_budget()
            await asyncio.wait_for(asyncio.to_thread(self._send, mails), budget)
        except TimeoutError:
            raise DeliveryError(f"SMTP timed out after {budget:g}s") from None
        except (OSError, smtplib.SMTPException) as exc:
            permanent = isinstance(exc, smtplib.SMTPResponseException) and exc.smtp_code >= 500
            raise DeliveryError(f"SMTP: {type(exc).__name__}", permanent=permanent) from None

    def _send(self, mails: list[EmailMessage]) -> None:
        with smtplib.SMTP(self.host, self.port, timeout=self.channel.timeout) as smtp:
            if self.channel.starttls:
                smtp.starttls(context=ssl.create_default_context(cafile=self.channel.ca_file))
            if self.channel.username:
                smtp.login(self.channel.username, self.password)
            for mail in mails:
                smtp.send_message(mail)
