"""Slack, PagerDuty and hosted-Statuspage channels against loopback servers that answer the
way the real APIs document (shapes, 429 with Retry-After, 5xx, 4xx)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from notifykit import (
    T0,
    Answer,
    Receiver,
    channel,
    incident,
    make_dispatcher,
    opened,
    resolved,
    settle,
    start_receiver,
    stop_receiver,
    updated,
)

from detector.clock import ManualClock
from detector.model import ComponentStatus, Episode, IncidentStatus
from detector.notify.config import Channel
from detector.store import SqlStore, open_store


@pytest.fixture(autouse=True)
def secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PD_ROUTING_KEY", "R0UTINGKEY0123456789012345678901")
    monkeypatch.setenv("SP_API_KEY", "sp-api-key")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlStore]:
    s = open_store(f"sqlite:///{tmp_path}/detector.db")
    yield s
    s.close()


def lifecycle(store: SqlStore) -> None:
    inc = incident()
    store.commit_engine([opened(inc)], {}, {"carriers/dhl": ComponentStatus.MAJOR_OUTAGE}, T0)
    store.commit_engine([updated(inc, T0 + 60, IncidentStatus.IDENTIFIED)], {}, {}, T0 + 60)
    statuses = {"carriers/dhl": ComponentStatus.OPERATIONAL}
    store.commit_engine([resolved(inc, T0 + 120)], {}, statuses, T0 + 120)


async def test_slack_gets_readable_text_with_the_status_page_link(
    store: SqlStore, receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    lifecycle(store)
    slack = channel(name="team", type="slack", url=receiver.url, match={"rule": "carrier-*"})
    await settle(make_dispatcher(store, [slack], session, ManualClock(T0)))
    texts = [b["text"] for b in receiver.bodies()]
    assert len(texts) == 3  # the rule filter leaves the component's own changes out
    assert texts[0].startswith(":red_circle: *DHL: label creation failing in Germany")
    assert "We are investigating problems creating labels" in texts[0]
    assert "error_ratio" not in texts[0]  # public audience: no evidence
    assert "<https://status.example.com|Status page>" in texts[0]
    assert "(resolved)" in texts[2]


async def test_slack_rate_limit_waits_for_retry_after(
    store: SqlStore, receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    store.commit_engine([opened(incident())], {}, {}, T0)
    receiver.script = [Answer(429, "rate_limited", {"Retry-After": "30"})]
    slack = channel(name="team", type="slack", url=receiver.url)
    clock = ManualClock(T0)
    dispatcher = make_dispatcher(store, [slack], session, clock)
    await settle(dispatcher)
    assert store.pending_deliveries("team")[0].next_at == T0 + 30
    clock.advance(29)
    await settle(dispatcher)
    assert len(receiver.requests) == 1
    clock.advance(1)
    await settle(dispatcher)
    assert len(receiver.requests) == 2 and not store.pending_deliveries("team")


async def test_slack_rejecting_the_payload_is_a_dead_letter(
    store: SqlStore, receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    store.commit_engine([opened(incident())], {}, {}, T0)
    receiver.default = Answer(404, "no_service")
    slack = channel(name="team", type="slack", url=receiver.url)
    await settle(make_dispatcher(store, [slack], session, ManualClock(T0)))
    (dead,) = store.list_deliveries(states=("dead",))
    assert dead.last_error == "HTTP 404: no_service"
    assert receiver.url not in dead.last_error  # a Slack URL is a secret


async def test_pagerduty_triggers_and_resolves_with_the_incident_as_dedup_key(
    store: SqlStore, receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    lifecycle(store)
    receiver.default = Answer(
        202, {"status": "success", "message": "Event processed", "dedup_key": "inc-1"}
    )
    receiver.script = [Answer(500, "oops")]  # one 5xx: retried
    pagerduty = channel(name="pd", type="pagerduty", url=receiver.url, secret_env="PD_ROUTING_KEY")
    clock = ManualClock(T0)
    dispatcher = make_dispatcher(store, [pagerduty], session, clock)
    await settle(dispatcher)
    clock.advance(60)
    await settle(dispatcher)
    events = receiver.bodies()[1:]
    assert [e["event_action"] for e in events] == ["trigger", "trigger", "resolve"]
    assert {e["dedup_key"] for e in events} == {"inc-1"}
    assert {e["routing_key"] for e in events} == {"R0UTINGKEY0123456789012345678901"}
    payload = events[0]["payload"]
    assert payload["severity"] == "critical" and payload["source"] == "carriers/dhl"
    assert payload["summary"].startswith("DHL: label creation failing")
    assert payload["custom_details"]["evidence"] == "error_ratio (1) >= 0.9"
    assert "payload" not in events[2]


async def test_statuspage_creates_updates_and_sets_components_through_the_map(
    store: SqlStore, receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    lifecycle(store)
    receiver.script = [Answer(420, {"error": "rate limited"}, {"Retry-After": "1"})]
    receiver.default = Answer(201, {"id": "p31zjtct2jer", "name": "DHL"})
    page = channel(
        name="hosted",
        type="statuspage",
        url=receiver.base + "/v1",
        page_id="kctbh9vrtdwd",
        secret_env="SP_API_KEY",
        components={"carriers/dhl": "8kbf7d35c070"},
        rate=100,
    )
    clock = ManualClock(T0)
    dispatcher = make_dispatcher(store, [page], session, clock)
    for _ in range(3):
        await settle(dispatcher)
        clock.advance(5)
    calls = Counter((r.method, r.path) for r in receiver.requests)
    expected = Counter(
        {
            ("GET", "/v1/pages/kctbh9vrtdwd/incidents/unresolved"): 1,  # made before? no
            ("POST", "/v1/pages/kctbh9vrtdwd/incidents"): 1,
            ("PATCH", "/v1/pages/kctbh9vrtdwd/incidents/p31zjtct2jer"): 2,
            ("PATCH", "/v1/pages/kctbh9vrtdwd/components/8kbf7d35c070"): 2,
        }
    )
    first = receiver.requests[0]
    assert calls == expected + Counter([(first.method, first.path)])  # the 420 is retried
    created = next(r.json["incident"] for r in receiver.requests if r.method == "POST")
    assert {r.headers["Authorization"] for r in receiver.requests} == {"OAuth sp-api-key"}
    assert created["name"] == "DHL: label creation failing in Germany"
    assert created["status"] == "investigating"
    assert created["components"] == {"8kbf7d35c070": "major_outage"}
    assert "error_ratio" not in str(receiver.bodies())  # public text only
    patches = [
        r.json for r in receiver.requests[1:] if r.method == "PATCH" and "/incidents/" in r.path
    ]
    assert [p["incident"]["status"] for p in patches] == ["identified", "resolved"]
    components = [r.json for r in receiver.requests[1:] if "/components/" in r.path]
    assert [c["component"]["status"] for c in components] == ["major_outage", "operational"]


def test_a_channel_missing_what_its_type_needs_is_a_config_error() -> None:
    with pytest.raises(ValueError, match=r"channel 'x' \(statuspage\) needs page_id"):
        Channel.model_validate({"name": "x", "type": "statuspage", "secret_env": "K"})
    with pytest.raises(ValueError, match="email carries public text only"):
        Channel.model_validate(
            {"name": "m", "type": "email", "url": "smtp://h", "sender": "a@b", "to": ["c@d"],
             "audience": "oncall"}
        )  # fmt: skip
    with pytest.raises(ValueError, match="notify_after is for audience oncall"):
        Channel.model_validate(
            {"name": "s", "type": "slack", "url": "http://x", "notify_after": "5m"}
        )


@pytest.mark.parametrize("kind", ["slack", "pagerduty", "statuspage"])
async def test_a_hanging_api_times_out_and_delays_no_other_channel(
    kind: str, store: SqlStore, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOOK_SECRET", "x")
    hanging, healthy = await start_receiver(), await start_receiver()
    try:
        hanging.default = Answer(hang=True)
        stuck = channel(
            name="stuck", type=kind, url=hanging.url if kind == "slack" else hanging.base,
            timeout="0.3s", secret_env="SP_API_KEY" if kind == "statuspage" else "PD_ROUTING_KEY",
            **({"page_id": "kctbh9vrtdwd", "rate": 100} if kind == "statuspage" else {}),
        )  # fmt: skip
        fine = channel(name="fine", type="webhook", url=healthy.url, secret_env="HOOK_SECRET")
        store.commit_engine([opened(incident())], {}, {}, T0)
        dispatcher = make_dispatcher(store, [stuck, fine], session, ManualClock(T0))
        await dispatcher.step()
        await dispatcher.drain(timeout=0.2)
        assert [b["event"] for b in healthy.bodies()] == ["incident.opened"]  # not held up
        await dispatcher.drain()
        (pending,) = store.pending_deliveries("stuck")
        assert pending.attempts == 1 and "timed out after 0.3s" in pending.last_error
    finally:
        await stop_receiver(hanging)
        await stop_receiver(healthy)


async def test_slack_says_component_maintenance_and_early_warning_in_words(
    store: SqlStore, receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    store.sync_components([])
    statuses = {"carriers/dhl": ComponentStatus.PARTIAL_OUTAGE}
    store.commit_engine([], {}, statuses, T0)
    store.commit_engine([], {}, {"carriers/dhl": ComponentStatus.UNDER_MAINTENANCE}, T0 + 60)
    store.commit_engine([], {}, {"carriers/dhl": ComponentStatus.OPERATIONAL}, T0 + 120)
    episodes = [Episode("carrier-label-creation", "carriers/ups", T0 - 600, None, "pending")]
    slack = channel(name="team", type="slack", url=receiver.url, audience="oncall",
                    notify_after="5m")  # fmt: skip
    clock = ManualClock(T0 + 120)
    await settle(make_dispatcher(store, [slack], session, clock, episodes=lambda: episodes))
    texts = sorted(b["text"] for b in receiver.bodies())
    assert any("dhl is now partial outage" in t for t in texts)
    assert any("dhl: maintenance started" in t for t in texts)
    assert any("dhl: maintenance ended, now operational" in t for t in texts)
    assert any(
        "Early warning: carrier-label-creation failing on carriers/ups for 12m" in t for t in texts
    )
