"""The decision pipeline: results -> buffer -> engine -> commit -> flush -> prune.

With several daemons only the leader's pipeline writes decisions (`detector.leader`); a
standby's evaluates in memory to keep its clocks warm. It turns results into incidents and
writes them. It owns the engine and the unwritten work (buffered results, pending decisions);
the daemon shell only decides when each step runs. The engine runs on the event loop thread;
the store is called from worker threads.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import TYPE_CHECKING

from structlog.typing import FilteringBoundLogger

from detector.backoff import backoff
from detector.clock import Clock
from detector.engine import Engine
from detector.engine.state import dump_state
from detector.metrics import Metrics
from detector.model import (
    ComponentStatus,
    Decision,
    IncidentOpened,
    IncidentResolved,
    IncidentUpdated,
    ProbeResult,
    Rule,
)
from detector.store.base import PeerRow, Store, StoreError
from detector.store.lease import Fenced

if TYPE_CHECKING:
    from detector.leader import Leadership

MAX_BUFFERED_RESULTS = 500_000  # ~10k probes for 50 minutes of store outage
BROKEN_AFTER_PASSES = 3  # a series failing this many evaluations in a row makes /readyz say so
# A leader reads other instances' results by `written_at` (the writer's clock at its flush)
# from the newest stamp it has seen minus this overlap: a batch stamped earlier may commit
# after a later one is already visible (a big batch after an outage takes a while to write),
# and writers' clocks differ a little. 120 s is far above both; re-reading it costs an id
# scan (whole rows are read only from the oldest id not fed yet), about half the CPU of
# reading those rows again (10k probes a minute: ~25 instead of ~55 ms an evaluation).
PEER_LOOKBACK_S = 120.0
MAX_FLUSH_BACKOFF_S = 60.0  # reconnect attempts while the store is down: 1x .. 60 s, jittered


class Pipeline:
    def __init__(
        self,
        engine: Engine,
        store: Store,
        *,
        metrics: Metrics,
        log: FilteringBoundLogger,
        clock: Clock,
        components: Collection[str],
        retention: float,
        leadership: Leadership | None = None,
        instance: str = "",
        max_buffered: int = MAX_BUFFERED_RESULTS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine = engine
        self.store = store
        self.metrics = metrics
        self.log = log
        self.clock = clock
        self.components = tuple(components)
        self.retention = retention
        self.store_ok = True
        self.buffer: list[ProbeResult] = []
        self.arrived: list[ProbeResult] = []  # not yet counted nor fed to the engine: drain()
        metrics.before_read(self.drain)
        self.pending: list[Decision] = []
        # One decision at a time: evaluations and manual updates both change the engine.
        self.lock = asyncio.Lock()
        self._saved_statuses: dict[str, ComponentStatus] = {}
        self.committed: list[Callable[[], None]] = []  # called after each commit that wrote
        self.leadership = leadership  # None: the one daemon, always leading
        self.instance = instance
        self.max_buffered = max_buffered
        self.monotonic = monotonic
        self._peer_seen: dict[int, float] = {}  # row id -> written_at, of peers' results fed
        self._peer_mark: float | None = None  # the newest written_at read from a peer
        self._peer_floor = -math.inf  # the last read's start: reads never start earlier
        self._retry_at = 0.0  # monotonic: no flush before this while the store is down
        self._failures = 0  # failed flushes in a row: the backoff doubles with each

    def leading(self) -> bool:
        return self.leadership is None or self.leadership.is_leader()

    def observe(self, result: ProbeResult) -> None:
        """A finished probe run: written with the next flush; counted and fed to the engine by
        the next `drain`. One tight loop over a batch costs about a third of the same work done
        run by run between network calls, with cold caches (bench/probe_cost_bench.py)."""
        self.buffer.append(result)
        self.arrived.append(result)

    def reconfigure(
        self,
        rules: Sequence[Rule],
        component_names: Mapping[str, str],
        components: Collection[str],
        retention: float,
    ) -> None:
        """A reload's new rules and components; runs that finished before it are judged by the
        rules they ran under."""
        self.drain()
        self.engine.set_rules(rules)
        self.engine.texts.component_names = dict(component_names)
        self.components = tuple(components)
        self.retention = retention

    def drain(self) -> None:
        """Count the runs that arrived and feed them to the engine; before every evaluation,
        lease takeover and metrics read, so nobody sees less than what finished."""
        arrived = self.arrived
        if not arrived:
            return
        self.arrived = []
        observe_probe, observe = self.metrics.observe_probe, self.engine.observe
        for result in arrived:
            observe_probe(result)
            observe(result)  # the engine itself sets suspect results aside

    async def evaluate(self) -> list[Decision]:
        async with self.lock:
            self.drain()
            await self.ingest_peers()
            now = self.clock.now()
            started = time.perf_counter()
            try:
                decisions = self.engine.evaluate(now)
            except Exception:  # last resort: a bug must not stop evaluation forever
                self.metrics.evaluation_failed()
                self.log.exception("evaluation_failed")
                decisions = []
            else:
                self.metrics.observe_evaluation(time.perf_counter() - started)
            self._report_series_errors()
            if not self.leading():  # a standby: the engine stays warm, nothing is written
                return []
            self.account(decisions)
            self.pending.extend(decisions)
            await self.commit(now)
            return decisions

    async def ingest_peers(self) -> int:
        """Feed other instances' newly written results to the engine (several daemons only),
        however old their `at`: a peer's results written late still count in every window
        they fall in; older ones the engine evicts at the evaluation."""
        if self.leadership is None or not self.leadership.shared:
            return 0
        since = self.peer_since()
        try:
            # `_peer_seen` changes only under the lock this evaluation holds: safe to share.
            read = self.store.peer_results
            rows = await asyncio.to_thread(read, since, self.instance, self._peer_seen)
        except StoreError as exc:
            self.store_failed("peer_results", exc)
            return 0
        self.store_ok = True
        return self._feed_peers(rows, since)

    def peer_since(self) -> float:
        """Where the next read of peers' results starts. The mark is capped at this daemon's
        clock: a peer whose clock runs ahead must not push it past what others still write."""
        now = self.clock.now()
        mark = now if self._peer_mark is None else min(self._peer_mark, now)
        # Never earlier than the last read (a clock stepped back): the ids it read before
        # that start are forgotten, and they must not be fed again.
        return max(mark - PEER_LOOKBACK_S, self._peer_floor)

    def _feed_peers(self, rows: Sequence[PeerRow], since: float) -> int:
        seen, observe, fed = self._peer_seen, self.engine.observe, 0
        for row_id, written_at, result in rows:
            if row_id not in seen:
                seen[row_id] = written_at
                observe(result)
                fed += 1
        self._advance_mark(rows)
        self._peer_floor = since
        # Rows written at or before `since` are never read again: their ids can go.
        for row_id in [row_id for row_id, written_at in seen.items() if written_at <= since]:
            del seen[row_id]
        return fed

    def _advance_mark(self, rows: Sequence[PeerRow]) -> None:
        if rows:  # oldest written first: the last is the newest
            newest = rows[-1].written_at
            self._peer_mark = newest if self._peer_mark is None else max(self._peer_mark, newest)

    def replace_engine(self, engine: Engine, peers: Sequence[PeerRow], since: float) -> None:
        """A new leader's engine (`detector.leader.hold_lease`); it already holds `peers`, the
        other instances' rows written after `since`."""
        self.engine = engine
        self.pending.clear()
        self._saved_statuses = {}
        self._peer_seen = {row.id: row.written_at for row in peers}
        self._advance_mark(peers)
        self._peer_floor = since

    async def decide(self, step: Callable[[float], list[Decision]]) -> list[Decision]:
        """Apply an operator's change to the engine (under the lock) and commit it."""
        async with self.lock:
            if not self.leading():
                raise ValueError("this instance is a standby: send writes to the leader")
            now = self.clock.now()
            decisions = step(now)
            self.account(decisions)
            self.pending.extend(decisions)
            await self.commit(now)
            return decisions

    def _report_series_errors(self) -> None:
        # One broken series (a bug, odd data) is isolated by the engine; count and name it.
        for error in self.engine.errors:
            self.metrics.evaluation_failed()
            self.log.error(
                "series_evaluation_failed",
                rule=error.rule,
                component=error.component,
                error=error.error,
            )

    def broken_series(self) -> list[tuple[str, str]]:
        """Series that failed to evaluate BROKEN_AFTER_PASSES or more passes in a row."""
        broken = self.engine.broken.items()
        return sorted(key for key, passes in broken if passes >= BROKEN_AFTER_PASSES)

    async def commit(self, now: float) -> None:
        engine = self.engine
        statuses = engine.component_statuses(now, self.components)
        self.metrics.set_component_statuses(statuses)
        self.metrics.set_failure_durations(engine.failure_durations(now))
        self.metrics.set_open_incidents(engine.open_counts())
        if not (self.pending or engine.changed or statuses != self._saved_statuses):
            return
        state = dump_state(engine)
        pending = list(self.pending)
        fence = self.leadership.write_fence() if self.leadership is not None else None
        try:
            await asyncio.to_thread(self.store.commit_engine, pending, state, statuses, now, fence)
        except Fenced as exc:  # deposed while deciding: the new leader decides again
            self.log.error("leader_write_refused", error=str(exc))
            self.pending.clear()
            if self.leadership is not None:
                self.leadership.step_down("write refused")
            return
        except StoreError as exc:
            self.store_failed("commit_engine", exc)
            return
        self.store_ok = True
        del self.pending[: len(pending)]
        engine.changed = False
        self._saved_statuses = statuses
        for callback in self.committed:
            callback()

    def account(self, decisions: Sequence[Decision]) -> None:
        for decision in decisions:
            if isinstance(decision, IncidentOpened):
                incident = decision.incident
                self.metrics.incident_opened(incident.rule, incident.cause)
                self.log.warning(
                    "incident_opened",
                    incident=incident.id,
                    rule=incident.rule,
                    component=incident.component,
                    title=incident.title,
                    cause=incident.cause,
                    deploy=incident.deploy,
                    component_status=str(incident.component_status),
                )
            elif isinstance(decision, IncidentResolved):
                self.metrics.incident_resolved(decision.incident.rule)
                self.log.info("incident_resolved", incident=decision.incident.id)
            elif isinstance(decision, IncidentUpdated):
                self.log.info(
                    "incident_updated",
                    incident=decision.incident.id,
                    status=str(decision.update.status),
                    component_status=str(decision.update.component_status),
                )

    async def flush(self, *, force: bool = False) -> int:
        """Write buffered results in one batch; on failure keep them (bounded) and retry
        after a backoff that doubles up to MAX_FLUSH_BACKOFF_S, with jitter so several
        daemons do not reconnect in step."""
        if not self.buffer or (not force and self.monotonic() < self._retry_at):
            return 0
        batch, self.buffer = self.buffer, []
        try:
            # Stamped with this flush's time: peers' leaders read results by it.
            await asyncio.to_thread(self.store.add_results, batch, self.clock.now())
        except StoreError as exc:
            self.buffer = batch + self.buffer
            overflow = len(self.buffer) - self.max_buffered
            if overflow > 0:  # bounded: memory must survive a long outage too
                del self.buffer[:overflow]  # the oldest go first
                self.metrics.results_dropped(overflow)
                self.log.error("results_dropped", count=overflow)
            self._failures += 1
            wait = backoff(self._failures, base=1.0, cap=MAX_FLUSH_BACKOFF_S)
            self._retry_at = self.monotonic() + wait
            self.store_failed("add_results", exc)
            return 0
        if not self.store_ok:
            self.log.info("store_reconnected", written=len(batch))
        self.store_ok = True
        self._failures, self._retry_at = 0, 0.0
        return len(batch)

    async def prune(self) -> int:
        now = self.clock.now()
        try:
            removed = await asyncio.to_thread(self.store.prune_results, now - self.retention)
        except StoreError as exc:
            self.store_failed("prune_results", exc)
            return 0
        calendar = self.engine.calendar
        calendar.forget_before(now - calendar.DEPLOY_MEMORY_S)
        self.log.info("results_pruned", count=removed)
        return removed

    def store_failed(self, action: str, exc: StoreError) -> None:
        self.store_ok = False
        self.metrics.store_error()
        self.log.error("store_error", action=action, error=str(exc))
