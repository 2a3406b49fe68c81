"""The email channel against a real SMTP server on loopback (aiosmtpd) that requires
STARTTLS with a self-signed certificate made here; the unsubscribe link works on the
daemon's own web app."""

from __future__ import annotations

import email
import email.policy
import ssl
import subprocess
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope
from apikit import Client
from daemonkit import free_port
from notifykit import T0, channel, incident, make_dispatcher, opened, resolved, settle

from detector.clock import ManualClock
from detector.model import ComponentStatus
from detector.store import SqlStore


class Inbox:
    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.starttls: list[bool] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        self.starttls.append(session.ssl is not None)
        return "250 OK"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture
def smtp(certificate: tuple[Path, Path]) -> Iterator[tuple[Inbox, int]]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    inbox, port = Inbox(), free_port()
    controller = Controller(
        inbox, hostname="127.0.0.1", port=port, tls_context=context, require_starttls=True
    )
    controller.start()
    yield inbox, port
    controller.stop()


async def test_subscribers_get_public_text_over_starttls_and_can_unsubscribe(
    smtp: tuple[Inbox, int],
    certificate: tuple[Path, Path],
    client: Client,
    store: SqlStore,
    session: aiohttp.ClientSession,
) -> None:
    inbox, port = smtp
    link = str(client.make_url("")).rstrip("/")
    mail = channel(
        name="subscribers", type="email", url=f"smtp://127.0.0.1:{port}",
        sender="status@example.com", to=["a@shop.example", "b@shop.example"],
        ca_file=str(certificate[0]), link=link,
    )  # fmt: skip
    inc = incident()
    store.commit_engine([opened(inc)], {}, {"carriers/dhl": ComponentStatus.MAJOR_OUTAGE}, T0)
    clock = ManualClock(T0)
    dispatcher = make_dispatcher(store, [mail], session, clock)
    await settle(dispatcher)
    assert all(inbox.starttls) and len(inbox.messages) == 2  # one message per subscriber
    first = inbox.messages[0]
    assert first["To"] == "a@shop.example"
    assert first["Subject"] == "[Status] DHL: label creation failing in Germany (investigating)"
    text = first.get_content()
    assert "We are investigating problems creating labels with DHL in Germany." in text
    assert "error_ratio" not in text and "carrier-label-creation" not in text  # public only
    unsubscribe = "".join(str(first["List-Unsubscribe"]).split()).strip("<>")
    assert first["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert f"Unsubscribe: {unsubscribe}" in text

    page = await session.get(unsubscribe)
    assert page.status == 200 and "a@shop.example will get no more" in await page.text()
    unknown = await session.post(link + "/unsubscribe/not-a-real-token")
    assert unknown.status == 404

    store.commit_engine(
        [resolved(inc, T0 + 600)], {}, {"carriers/dhl": ComponentStatus.OPERATIONAL}, T0 + 600
    )
    await settle(dispatcher)
    resolved_mail = [m for m in inbox.messages[2:] if "(resolved)" in m["Subject"]]
    assert [m["To"] for m in resolved_mail] == ["b@shop.example"]


async def test_an_smtp_server_that_refuses_the_certificate_is_a_retry(
    smtp: tuple[Inbox, int], store: SqlStore, session: aiohttp.ClientSession
) -> None:
    inbox, port = smtp
    mail = channel(
        name="subscribers", type="email", url=f"smtp://127.0.0.1:{port}",
        sender="status@example.com", to=["a@shop.example"], link="https://status.example.com",
    )  # fmt: skip
    store.commit_engine([opened(incident())], {}, {}, T0)
    await settle(make_dispatcher(store, [mail], session, ManualClock(T0)))
    (pending,) = store.pending_deliveries("subscribers")
    assert inbox.messages == [] and "SMTP: SSLCertVerificationError" in pending.last_error
