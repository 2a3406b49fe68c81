"""`detector notifications list|retry`, the `notifications:` config section's errors, and
Alertmanager re-sends, on a real SQLite store."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
from notifykit import (
    T0,
    Answer,
    channel,
    incident,
    make_dispatcher,
    opened,
    settle,
    start_receiver,
    stop_receiver,
)

from detector.cli import main
from detector.clock import ManualClock
from detector.settings import ConfigError, load_settings
from detector.store import open_store


async def test_list_shows_dead_deliveries_with_their_error_and_retry_revives_them(
    tmp_path: Path, session: aiohttp.ClientSession, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setenv("HOOK_SECRET", "x")
    url = f"sqlite:///{tmp_path}/detector.db"
    store = open_store(url)
    receiver = await start_receiver()
    try:
        receiver.default = Answer(410, "gone")
        hook = channel(name="ops-hook", type="webhook", url=receiver.url, secret_env="HOOK_SECRET")
        store.commit_engine([opened(incident())], {}, {}, T0)
        await settle(make_dispatcher(store, [hook], session, ManualClock(T0)))
        assert main(["notifications", "list", "--store", url, "--dead"]) == 0
        out = capsys.readouterr().out
        (dead,) = store.list_deliveries(states=("dead",))
        assert dead.id in out and "incident.opened" in out and "HTTP 410: gone" in out
        assert main(["notifications", "retry", "--store", url, dead.id]) == 0
        assert "1 deliveries pending again" in capsys.readouterr().out
        assert store.pending_deliveries("ops-hook")[0].id == dead.id
        assert main(["notifications", "retry", "--store", url, "no-such-id"]) == 1
        assert main(["notifications", "list", "--store", url, "--dead"]) == 0
        assert "no dead deliveries" in capsys.readouterr().out
    finally:
        await stop_receiver(receiver)
        store.close()


async def test_alertmanager_re_sends_open_incidents_every_resend_interval(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    store = open_store(f"sqlite:///{tmp_path}/detector.db")
    receiver = await start_receiver()
    try:
        am = channel(name="am", type="alertmanager", url=receiver.base, resend_interval="1m")
        store.commit_engine([opened(incident())], {}, {}, T0)
        clock = ManualClock(T0)
        dispatcher = make_dispatcher(store, [am], session, clock)
        await settle(dispatcher)
        posts = len(receiver.requests)
        clock.advance(30)
        await settle(dispatcher)
        assert len(receiver.requests) == posts  # not yet
        clock.advance(30)
        await settle(dispatcher)
        (alerts,) = [r.json for r in receiver.requests[posts:]]
        assert [a["labels"]["incident"] for a in alerts] == ["inc-1"]
        assert "endsAt" not in alerts[0]
        assert {r.path for r in receiver.requests} == {"/api/v2/alerts"}
    finally:
        await stop_receiver(receiver)
        store.close()


BASE = """
rules: [rules/]
components: [{id: carriers/dhl, name: DHL}]
notifications:
"""


@pytest.mark.parametrize(
    ("channels", "message"),
    [
        ("  - {name: a, type: webhook, url: 'http://x'}",
         ":5: notifications[0]: channel 'a' (webhook) needs secret_env or secret_file"),
        ("  - {name: a, type: pager}",
         ":5: notifications[0].type: Input should be 'webhook', 'slack'"),
        ("  - {name: a, type: slack, url: 'http://x'}\n  - {name: a, type: slack, url: 'http://y'}",
         "duplicate channel name 'a'"),
        ("  - {name: a, type: slack, url: 'http://x', match: {status: [red]}}",
         "notifications[0].match.status[0]: Input should be 'operational'"),
        ("  - {name: a, type: webhook, url: 'http://x', secret_env: NO_SUCH_SECRET_ENV}",
         ":5: notifications[0].secret_env: environment variable NO_SUCH_SECRET_ENV is not set"),
        ("  - {name: a, type: slack, url: 'http://x', colour: red}",
         "notifications[0].colour: unknown key"),
    ],
)  # fmt: skip
def test_a_bad_channel_is_one_line_naming_file_line_and_field(
    tmp_path: Path, channels: str, message: str
) -> None:
    config = tmp_path / "detector.yaml"
    config.write_text(BASE + channels + "\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert str(caught.value).startswith(f"{config}:")


def test_email_without_a_page_url_or_a_smtp_url_is_a_config_error(tmp_path: Path) -> None:
    config = tmp_path / "detector.yaml"
    mail = "{name: m, type: email, url: 'smtp://mail:587', sender: s@x, to: [a@x]}"
    config.write_text(BASE + f"  - {mail}\n")
    with pytest.raises(ConfigError, match=r":5: notifications\[0\].link: email needs page_url"):
        load_settings(config)
    config.write_text(BASE + "  - " + mail.replace("smtp://mail:587", "http://mail") + "\n")
    with pytest.raises(ConfigError, match="url must be smtp://host:port"):
        load_settings(config)
    config.write_text("page_url: https://status.example.com\n" + BASE + f"  - {mail}\n")
    assert load_settings(config).notifications[0].to == ["a@x"]
