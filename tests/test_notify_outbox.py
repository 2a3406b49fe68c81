"""The outbox and the dispatcher, through the webhook channel, on a real SQLite store and a
loopback receiver, on a manual clock."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import Iterator

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
from detector.metrics import Metrics
from detector.model import ComponentStatus, Episode, IncidentStatus
from detector.notify.config import Channel
from detector.notify.payload import incident_object
from detector.store import SqlStore, StoreError, open_store
from detector.timeutil import format_time

SECRET = "s3cret-hmac-key"


@pytest.fixture(autouse=True)
def secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOK_SECRET", SECRET)


@pytest.fixture
def store(store_url: str) -> Iterator[SqlStore]:
    """The outbox on both backends: the same contract."""
    s = open_store(store_url)
    yield s
    s.close()


def hook(receiver: Receiver, name: str = "ops-hook", **more: object) -> Channel:
    return channel(name=name, type="webhook", url=receiver.url, secret_env="HOOK_SECRET", **more)


def commit(store: SqlStore, decisions: list[object], statuses: dict[str, ComponentStatus],
           now: float) -> None:  # fmt: skip
    store.commit_engine(decisions, {"v": 1}, statuses, now)  # type: ignore[arg-type]


async def test_every_change_is_delivered_in_order_signed_with_the_contract_body(
    store: SqlStore, receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    clock = ManualClock(T0)
    inc = incident()
    commit(store, [opened(inc)], {"carriers/dhl": ComponentStatus.MAJOR_OUTAGE}, T0)
    commit(store, [updated(inc, T0 + 60, IncidentStatus.IDENTIFIED)], {}, T0 + 60)
    commit(
        store, [resolved(inc, T0 + 120)], {"carriers/dhl": ComponentStatus.OPERATIONAL}, T0 + 120
    )
    metrics = Metrics("test")
    dispatcher = make_dispatcher(store, [hook(receiver)], session, clock, metrics)
    await settle(dispatcher)
    events = [body["event"] for body in receiver.bodies()]
    # Incident events in order; the component's own changes (a subject of their own) too.
    assert [e for e in events if e.startswith("incident.")] == [
        "incident.opened", "incident.updated", "incident.resolved",
    ]  # fmt: skip
    assert events.count("component.updated") == 2
    first = receiver.requests[0]
    expected = hmac.new(SECRET.encode(), first.raw, hashlib.sha256).hexdigest()
    assert first.headers["X-Detector-Signature"] == f"sha256={expected}"
    body = first.json
    assert set(body) >= {"event", "delivery", "at", "incident"}
    assert body["incident"]["id"] == "inc-1"
    assert body["incident"]["updates"][0]["evidence"] == "error_ratio (1) >= 0.9"  # oncall
    assert body["at"] == "2026-11-28T10:00:00Z"
    assert (
        metrics.get("detector_notifications_total", {"channel": "ops-hook", "result": "delivered"})
        == 5
    )
    assert metrics.get("detector_notification_queue_depth", {"channel": "ops-hook"}) == 0


async def test_public_audience_never_sees_evidence_or_on_call_only_updates(
    store: SqlStore, receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    clock = ManualClock(T0)
    inc = incident()
    commit(store, [opened(inc)], {}, T0)
    commit(store, [updated(inc, T0 + 60, IncidentStatus.INVESTIGATING, public=False)], {}, T0 + 60)
    dispatcher = make_dispatcher(store, [hook(receiver, audience="public")], session, clock)
    await settle(dispatcher)
    assert [b["event"] for b in receiver.bodies()] == ["incident.opened"]
    assert "evidence" not in receiver.bodies()[0]["incident"]["updates"][0]


def test_a_failed_commit_writes_no_outbox_row(store: SqlStore) -> None:
    with pytest.raises(StoreError):
        commit(store, [opened(incident()), object()], {}, T0)
    assert store.fan_out(lambda e, f, t: ["x"], T0) == 0


async def test_retries_back_off_honour_retry_after_keep_the_id_and_hold_the_incident_order(
    store: SqlStore, receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    clock = ManualClock(T0)
    inc = incident()
    commit(store, [opened(inc)], {}, T0)
    commit(store, [updated(inc, T0 + 60, IncidentStatus.IDENTIFIED)], {}, T0)
    receiver.script = [Answer(503, "down"), Answer(429, "slow", {"Retry-After": "7"})]
    dispatcher = make_dispatcher(store, [hook(receiver, max_attempts=5)], session, clock)
    await settle(dispatcher)
    assert len(receiver.requests) == 1  # 503: the update waits behind the open
    (pending,) = store.pending_deliveries("ops-hook")[:1]
    assert pending.attempts == 1 and T0 + 1 <= pending.next_at <= T0 + 2  # 2 s, jittered
    clock.advance(2)
    await settle(dispatcher)
    retry = store.pending_deliveries("ops-hook")[0]
    assert retry.id == pending.id and retry.next_at == pytest.approx(T0 + 2 + 7)  # Retry-After
    clock.advance(7)
    await settle(dispatcher)
    deliveries = [b["delivery"] for b in receiver.bodies()]
    assert deliveries[:3] == [pending.id] * 3
    assert [b["event"] for b in receiver.bodies()] == [
        "incident.opened", "incident.opened", "incident.opened", "incident.updated",
    ]  # fmt: skip


async def test_bounded_attempts_then_a_dead_letter_that_retry_brings_back(
    store: SqlStore, receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    clock = ManualClock(T0)
    commit(store, [opened(incident())], {}, T0)
    receiver.default = Answer(500, "boom")
    metrics = Metrics("test")
    dispatcher = make_dispatcher(store, [hook(receiver, max_attempts=3)], session, clock, metrics)
    for _ in range(3):
        await settle(dispatcher)
        clock.advance(3600)
    (dead,) = store.list_deliveries(states=("dead",))
    assert dead.attempts == 3 and "HTTP 500: boom" in dead.last_error
    assert (
        metrics.get("detector_notifications_total", {"channel": "ops-hook", "result": "dead"}) == 1
    )
    receiver.default = Answer(200)
    assert store.retry_deliveries([], clock.now()) == 1
    await settle(dispatcher)
    assert store.list_deliveries(states=("delivered",))[0].id == dead.id


async def test_a_4xx_is_dead_at_once(
    store: SqlStore, receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    commit(store, [opened(incident())], {}, T0)
    receiver.default = Answer(400, "bad payload")
    dispatcher = make_dispatcher(store, [hook(receiver)], session, ManualClock(T0))
    await settle(dispatcher)
    assert len(receiver.requests) == 1
    assert store.list_deliveries(states=("dead",))[0].last_error == "HTTP 400: bad payload"


async def test_a_hanging_channel_delays_no_other_channel(
    store: SqlStore, session: aiohttp.ClientSession
) -> None:
    hanging, healthy = await start_receiver(), await start_receiver()
    try:
        hanging.default = Answer(hang=True)
        commit(store, [opened(incident())], {}, T0)
        channels = [hook(hanging, "stuck", timeout="30s"), hook(healthy, "fine")]
        dispatcher = make_dispatcher(store, channels, session, ManualClock(T0))
        await dispatcher.step()
        for _ in range(50):  # the healthy channel is done while the other still hangs
            if healthy.requests and not store.pending_deliveries("fine"):
                break
            await dispatcher.drain(timeout=0.05)
        assert [b["event"] for b in healthy.bodies()] == ["incident.opened"]
        assert len(hanging.requests) == 1 and store.pending_deliveries("stuck")
    finally:
        await stop_receiver(hanging)
        await stop_receiver(healthy)


async def test_a_timeout_is_a_failed_attempt(
    store: SqlStore, receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    commit(store, [opened(incident())], {}, T0)
    receiver.default = Answer(hang=True)
    dispatcher = make_dispatcher(store, [hook(receiver, timeout="0.2s")], session, ManualClock(T0))
    await settle(dispatcher, rounds=1)
    (pending,) = store.pending_deliveries("ops-hook")
    assert pending.attempts == 1 and "timed out after 0.2s" in pending.last_error


async def test_a_new_dispatcher_resumes_what_the_last_one_left(
    store: SqlStore, receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    clock = ManualClock(T0)
    commit(store, [opened(incident("a")), opened(incident("b", "carriers/ups"))], {}, T0)
    first = make_dispatcher(store, [hook(receiver)], session, clock)
    await first.step()
    for task in list(first.inflight):  # dies mid-attempt: nothing was recorded
        task.cancel()
    await first.drain()
    second = make_dispatcher(store, [hook(receiver)], session, clock)
    await settle(second)
    seen = {b["delivery"]: b["incident"]["id"] for b in receiver.bodies()}
    assert sorted(seen.values()) == ["a", "b"]  # each change once, after dedup by delivery id


async def test_early_warning_goes_once_to_on_call_after_notify_after(
    store: SqlStore, receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    clock = ManualClock(T0)
    episodes = [Episode("carrier-label-creation", "carriers/dhl", T0 - 240, None, "pending")]
    channels = [hook(receiver, notify_after="5m"), hook(receiver, "public-hook", audience="public")]
    dispatcher = make_dispatcher(store, channels, session, clock, episodes=lambda: episodes)
    await settle(dispatcher)
    assert receiver.requests == []  # 4 minutes: not yet
    clock.advance(60)
    await settle(dispatcher)
    clock.advance(60)
    await settle(dispatcher)
    (body,) = receiver.bodies()
    assert body["event"] == "episode.started" and body["incident"] is None
    assert (
        body["episode"]["component"] == "carriers/dhl" and body["episode"]["failing_for_s"] == 300
    )


async def test_maintenance_start_and_end_are_events(
    store: SqlStore, receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    commit(store, [], {"carriers/dhl": ComponentStatus.UNDER_MAINTENANCE}, T0)
    commit(store, [], {"carriers/dhl": ComponentStatus.OPERATIONAL}, T0 + 600)
    dispatcher = make_dispatcher(store, [hook(receiver)], session, ManualClock(T0 + 600))
    await settle(dispatcher)
    bodies = receiver.bodies()
    assert [b["event"] for b in bodies] == ["maintenance.started", "maintenance.ended"]
    assert bodies[1]["component"]["previous_status"] == "under_maintenance"


async def test_finished_deliveries_are_forgotten_after_a_week_pending_ones_never(
    store: SqlStore, receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    commit(store, [opened(incident("a"))], {}, T0)
    clock = ManualClock(T0)
    dispatcher = make_dispatcher(store, [hook(receiver)], session, clock)
    await settle(dispatcher)
    receiver.default = Answer(503)
    commit(store, [opened(incident("b", "carriers/ups"))], {}, T0 + 1)
    await settle(dispatcher)
    assert store.prune_outbox(T0 + 8 * 86400) == 1  # "a" delivered; "b" still pending
    assert store.list_deliveries(states=("delivered",)) == []
    assert [d.subject for d in store.pending_deliveries("ops-hook")] == ["b"]


async def test_the_loop_sends_when_woken_and_only_while_it_leads(
    store: SqlStore, receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    leading = False
    commit(store, [opened(incident())], {}, T0)
    dispatcher = make_dispatcher(
        store,
        [hook(receiver)],
        session,
        ManualClock(T0),
        should_run=lambda: leading,
    )
    stopping = asyncio.Event()
    loop = asyncio.create_task(dispatcher.run(stopping))
    for _ in range(20):  # a standby's loop turns, woken, and sends nothing
        dispatcher.wake()
        await asyncio.sleep(0)
    assert receiver.requests == [] and store.list_deliveries(states=("pending",)) == []
    leading = True
    dispatcher.wake()
    for _ in range(400):
        if store.list_deliveries(states=("delivered",)):
            break
        await asyncio.sleep(0.005)
    assert [b["event"] for b in receiver.bodies()] == ["incident.opened"]
    stopping.set()
    await asyncio.wait_for(loop, 5)


def test_a_time_no_reader_can_format_is_null_in_the_payload_not_an_error() -> None:
    far = incident("inc-far")
    far.started_at = 1e18  # a deploy "in the year 30 billion" named it: no calendar has it
    far.resolved_at = 1e18
    data = incident_object(far)
    assert (data["started_at"], data["resolved_at"]) == (None, None)
    assert data["opened_at"] == format_time(T0)
    assert [u["at"] for u in data["updates"]] == [format_time(u.at) for u in far.updates]
