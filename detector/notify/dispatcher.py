"""The dispatcher: fans outbox rows out to channels and delivers them.

At least once and in order per subject (an incident): a channel works on the oldest pending
delivery of each subject only. Each channel has its own worker slots (`concurrency`), its own
timeout and its own backoff, so a slow or hanging channel delays no other channel and no
probe (the dispatcher is one task beside the scheduler; store calls run in worker threads).
A failed attempt is retried after exponential backoff with jitter, or after `Retry-After`;
after `max_attempts`, or at once for a permanent error, the delivery is dead-lettered.
Everything is in the store, so a restart or a new leader resumes where the last one stopped.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp
from structlog.typing import FilteringBoundLogger

from detector.backoff import backoff
from detector.clock import Clock
from detector.metrics import Metrics
from detector.model import Episode, Incident
from detector.notify.alertmanager import Alertmanager
from detector.notify.config import Channel
from detector.notify.email import Email
from detector.notify.http import DeliveryError, Sender
from detector.notify.pagerduty import PagerDuty
from detector.notify.payload import OutboxEvent, component_group, episode_event
from detector.notify.slack import Slack
from detector.notify.statuspage import Statuspage
from detector.notify.webhook import Webhook
from detector.store.base import StoreError
from detector.store.outbox import Delivery, DeliveryState, Router

BACKOFF_BASE_S = 2.0
BACKOFF_CAP_S = 600.0
POLL_S = 1.0  # how often pending retries are looked at when nothing wakes the dispatcher
STOP_GRACE_S = 3.0
WARN_EVERY_S = 1.0
KEEP_S = 7 * 86400.0  # finished deliveries (dead letters too) stay this long for on-call
PRUNE_EVERY_S = 3600.0
DEPTHS_EVERY_S = 1.0  # the queue-depth gauge: a COUNT per second at most, not one per step


class OutboxStore(Protocol):
    def fan_out(self, route: Router, now: float, limit: int = 1000) -> int: ...
    def pending_heads(self, channel: str, limit: int = 2000) -> list[tuple[str, str, float]]: ...
    def load_deliveries(self, ids: Sequence[str]) -> list[Delivery]: ...
    def finish_delivery(
        self, delivery_id: str, state: DeliveryState, *, next_at: float, error: str, now: float
    ) -> None: ...
    def add_outbox_events(self, events: Sequence[OutboxEvent]) -> None: ...
    def queue_depths(self) -> dict[str, int]: ...
    def prune_outbox(self, before: float) -> int: ...
    def channel_ref(self, channel: str, key: str) -> str | None: ...
    def set_channel_ref(self, channel: str, key: str, ref: str) -> None: ...
    def subscribers(self, channel: str, addresses: list[str]) -> dict[str, str]: ...
    def list_incidents(
        self, *, unresolved_only: bool = False, limit: int = 50
    ) -> list[Incident]: ...


@dataclass
class _Lane:
    """One channel's worker slots and the subjects it has in flight."""

    channel: Channel
    sender: Sender
    slots: asyncio.Semaphore
    busy: set[str] = field(default_factory=set)
    last_resend: float = float("-inf")


class Dispatcher:
    def __init__(
        self,
        store: OutboxStore,
        channels: Sequence[Channel],
        *,
        session: aiohttp.ClientSession,
        clock: Clock,
        metrics: Metrics,
        log: FilteringBoundLogger,
        link: str = "",
        page_name: str = "Status",
        should_run: Callable[[], bool] = lambda: True,
        episodes: Callable[[], list[Episode]] = list,
        rng: random.Random | None = None,
    ) -> None:
        self.store, self.session, self.clock = store, session, clock
        self.metrics, self.log = metrics, log
        self.link, self.page_name = link, page_name
        self.should_run, self.episodes = should_run, episodes
        self.rng = rng or random.Random()
        self.lanes = {
            c.name: _Lane(c, self._sender(c), asyncio.Semaphore(c.concurrency)) for c in channels
        }
        self.inflight: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._depths_at = float("-inf")
        self.stop_grace = STOP_GRACE_S
        self._pruned_at = float("-inf")
        self._warned_at = float("-inf")

    def _sender(self, channel: Channel) -> Sender:
        if channel.type == "email":
            return Email(channel, self, self.store)
        if channel.type == "statuspage":
            return Statuspage(channel, self, self.store)
        kinds: Mapping[str, Any] = {
            "webhook": Webhook,
            "slack": Slack,
            "pagerduty": PagerDuty,
            "alertmanager": Alertmanager,
        }
        sender: Sender = kinds[channel.type](channel, self)
        return sender

    def route(self, event: str, facts: Mapping[str, Any], target: str) -> list[str]:
        return [
            name for name, lane in self.lanes.items() if lane.channel.wants(event, facts, target)
        ]

    def wake(self) -> None:
        """Something was committed: look at the outbox now, not at the next poll."""
        self._wake.set()

    async def run(self, stopping: asyncio.Event) -> None:
        """The daemon's task: a step whenever woken (or every POLL_S), while `should_run`."""
        while not stopping.is_set():
            self._wake.clear()  # before the step: a wake during it means "step again"
            if self.should_run():
                try:
                    await self.step()
                except Exception:  # last resort: a bug must not end notifications for good
                    self.log.exception("dispatch_failed")
            waits = [asyncio.ensure_future(e.wait()) for e in (self._wake, stopping)]
            await asyncio.wait(waits, timeout=POLL_S, return_when=asyncio.FIRST_COMPLETED)
            for waiter in waits:
                waiter.cancel()
        await self.close()

    async def close(self) -> None:
        """Shutdown: attempts under way get STOP_GRACE_S; the rest are cancelled and stay
        pending in the store, so the next leader sends them (at least once)."""
        await self.drain(timeout=self.stop_grace)
        for task in list(self.inflight):
            task.cancel()
        await asyncio.gather(*self.inflight, return_exceptions=True)

    async def step(self) -> None:
        """Early warnings, fan-out, then start what each channel may send now."""
        if not self.lanes:
            return
        now = self.clock.now()
        try:
            await self._early_warnings(now)
            await asyncio.to_thread(self.store.fan_out, self.route, now)
            for lane in self.lanes.values():
                await self._start(lane, now)
            await self._resend_alerts(now)
            if now - self._pruned_at >= PRUNE_EVERY_S:
                self._pruned_at = now
                await asyncio.to_thread(self.store.prune_outbox, now - KEEP_S)
            if now - self._depths_at >= DEPTHS_EVERY_S or not self.inflight:
                self._depths_at = now
                depths = await asyncio.to_thread(self.store.queue_depths)
                self.metrics.set_notification_queue_depths(
                    {n: depths.get(n, 0) for n in self.lanes}
                )
        except StoreError as exc:
            self.metrics.store_error()
            self.log.error("store_error", action="dispatch_notifications", error=str(exc))

    async def drain(self, timeout: float | None = None) -> None:
        """Wait for the attempts under way (tests; shutdown, bounded by `timeout`)."""
        if self.inflight:
            await asyncio.wait(set(self.inflight), timeout=timeout)

    async def _early_warnings(self, now: float) -> None:
        # Every series is looked at: once a second at most, not on every delivery's wake.
        if now - self._warned_at < WARN_EVERY_S:
            return
        self._warned_at = now
        events = [
            episode_event(episode, lane.channel.name, now)
            for lane in self.lanes.values()
            if lane.channel.notify_after is not None and lane.channel.audience == "oncall"
            for episode in self.episodes()
            if episode.outcome == "pending"
            and now - episode.started_at >= lane.channel.notify_after
            and lane.channel.match.matches(
                "episode.started",
                {
                    "rule": episode.rule,
                    "component": episode.component,
                    "group": component_group(episode.component),
                },
            )
        ]
        if events:  # written once each (their dedup key), so repeating this is harmless
            await asyncio.to_thread(self.store.add_outbox_events, events)

    async def _start(self, lane: _Lane, now: float) -> None:
        free = lane.channel.concurrency - len(lane.busy)
        if free <= 0:
            return
        heads = await asyncio.to_thread(self.store.pending_heads, lane.channel.name)
        seen: set[str] = set()
        chosen: list[str] = []
        for delivery_id, subject, next_at in heads:
            if subject in seen:
                continue  # in order per subject: only its oldest pending delivery may go
            seen.add(subject)
            if subject not in lane.busy and next_at <= now:
                chosen.append(delivery_id)
                if len(chosen) == free:
                    break
        for delivery in await asyncio.to_thread(self.store.load_deliveries, chosen):
            await lane.slots.acquire()  # never waits: `free` counted the slots
            lane.busy.add(delivery.subject)
            task = asyncio.get_running_loop().create_task(self._attempt(lane, delivery))
            self.inflight.add(task)
            task.add_done_callback(self.inflight.discard)

    async def _attempt(self, lane: _Lane, delivery: Delivery) -> None:
        channel = lane.channel
        try:
            budget = channel.attempt_budget()  # a backstop: each sender has its own timeout
            try:
                await asyncio.wait_for(lane.sender.send(delivery), budget)
            except TimeoutError:
                raise DeliveryError(f"no answer within {budget:g}s") from None
            except (DeliveryError, asyncio.CancelledError):
                raise
            except Exception as exc:  # a bug in a channel must not stop the others
                self.log.exception("notification_crashed", channel=channel.name)
                raise DeliveryError(f"crashed: {type(exc).__name__}") from None
        except DeliveryError as exc:
            await self._failed(lane, delivery, exc)
        else:
            await self._record(delivery, "delivered", 0.0, "")
            self.metrics.notification(channel.name, "delivered")
            self.log.info(
                "notification_delivered",
                channel=channel.name,
                kind=delivery.event,
                delivery=delivery.id,
                subject=delivery.subject,
            )
        finally:
            lane.busy.discard(delivery.subject)
            lane.slots.release()
            self.wake()  # the subject's next delivery may go now

    async def _failed(self, lane: _Lane, delivery: Delivery, exc: DeliveryError) -> None:
        attempts = delivery.attempts + 1
        now = self.clock.now()
        dead = exc.permanent or attempts >= lane.channel.max_attempts
        wait = exc.retry_after
        if wait is None:
            wait = backoff(attempts, base=BACKOFF_BASE_S, cap=BACKOFF_CAP_S, rng=self.rng)
        await self._record(delivery, "dead" if dead else "pending", now + wait, str(exc))
        self.metrics.notification(lane.channel.name, "dead" if dead else "failed")
        log = self.log.error if dead else self.log.warning
        log(
            "notification_dead" if dead else "notification_failed",
            channel=lane.channel.name,
            kind=delivery.event,
            delivery=delivery.id,
            attempts=attempts,
            error=str(exc),
            retry_in_s=None if dead else round(wait, 3),
        )

    async def _record(
        self, delivery: Delivery, state: DeliveryState, next_at: float, error: str
    ) -> None:
        try:
            await asyncio.to_thread(
                self.store.finish_delivery,
                delivery.id,
                state,
                next_at=next_at,
                error=error,
                now=self.clock.now(),
            )
        except StoreError as exc:  # it stays pending: sent again later (at least once)
            self.metrics.store_error()
            self.log.error("store_error", action="record_delivery", error=str(exc))

    async def _resend_alerts(self, now: float) -> None:
        lanes = [
            lane
            for lane in self.lanes.values()
            if isinstance(lane.sender, Alertmanager)
            and now - lane.last_resend >= lane.channel.resend_interval
        ]
        if not lanes:
            return
        incidents = await asyncio.to_thread(self.store.list_incidents, unresolved_only=True)
        for lane in lanes:
            lane.last_resend = now
            assert isinstance(lane.sender, Alertmanager)
            # A task of its own: a hanging Alertmanager must not hold up this step.
            task = asyncio.get_running_loop().create_task(self._resend(lane.sender, incidents))
            self.inflight.add(task)
            task.add_done_callback(self.inflight.discard)

    async def _resend(self, sender: Alertmanager, incidents: list[Incident]) -> None:
        try:
            await asyncio.wait_for(sender.resend(incidents), sender.channel.timeout * 2)
        except (DeliveryError, TimeoutError) as exc:
            self.log.warning("alerts_resend_failed", channel=sender.channel.name, error=str(exc))

    @classmethod
    def for_daemon(
        cls, daemon: Any, store: Any, session: aiohttp.ClientSession, pipeline: Any
    ) -> Dispatcher:
        """The daemon's dispatcher: woken by each commit, warned by the engine's episodes."""
        settings = daemon.settings
        dispatcher = cls(
            store,
            settings.notifications,
            session=session,
            clock=daemon.clock,
            metrics=daemon.metrics,
            log=daemon.log,
            link=settings.page_url,
            page_name=settings.page_name,
            episodes=lambda: pipeline.engine.running_episodes(),
            should_run=pipeline.leading,  # the leader delivers; standbys keep the outbox
        )
        pipeline.committed.append(dispatcher.wake)
        return dispatcher
