"""The decision pipeline: results -> buffer -> engine -> commit -> flush -> prune.

This is the part a leader lease will gate: everything that turns results into incidents and
writes them. It owns the engine and the unwritten work (buffered results, pending decisions);
the daemon shell only decides when each step runs. The engine runs on the event loop thread;
the store is called from worker threads.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection, Sequence

from structlog.typing import FilteringBoundLogger

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
)
from detector.store.base import Store, StoreError

MAX_BUFFERED_RESULTS = 500_000  # ~10k probes for 50 minutes of store outage
BROKEN_AFTER_PASSES = 3  # a series failing this many evaluations in a row makes /readyz say so


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
        self.pending: list[Decision] = []
        # One decision at a time: evaluations and manual updates both change the engine.
        self.lock = asyncio.Lock()
        self._saved_statuses: dict[str, ComponentStatus] = {}
        self.committed: list[Callable[[], None]] = []  # called after each commit that wrote

    def observe(self, result: ProbeResult) -> None:
        """A finished probe run: counted, judged later, written with the next flush."""
        self.metrics.observe_probe(result)
        self.engine.observe(result)  # the engine itself sets suspect results aside
        self.buffer.append(result)

    async def evaluate(self) -> list[Decision]:
        async with self.lock:
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
            self.account(decisions)
            self.pending.extend(decisions)
            await self.commit(now)
            return decisions

    async def decide(self, step: Callable[[float], list[Decision]]) -> list[Decision]:
        """Apply an operator's change to the engine (under the lock) and commit it."""
        async with self.lock:
            now = self.clock.now()
            decisions = step(now)
            self.account(decisions)
            self.pending.extend(decisions)
            await self.commit(now)
            return decisions

    def _report_series_errors(self) -> None:
        # One broken series (a bug, odd data) is isolated by the engine; count and name it.
        for error in getattr(self.engine, "errors", ()):
            self.metrics.evaluation_failed()
            self.log.error(
                "series_evaluation_failed",
                rule=error.rule,
                component=error.component,
                error=str(error.error),
            )

    def broken_series(self) -> list[tuple[str, str]]:
        """Series that failed to evaluate BROKEN_AFTER_PASSES or more passes in a row."""
        broken: dict[tuple[str, str], int] = getattr(self.engine, "broken", {})
        return sorted(key for key, passes in broken.items() if passes >= BROKEN_AFTER_PASSES)

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
        try:
            await asyncio.to_thread(self.store.commit_engine, pending, state, statuses, now)
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

    async def flush(self) -> int:
        """Write buffered results in one batch; on failure keep them for the next try."""
        batch, self.buffer = self.buffer, []
        if not batch:
            return 0
        try:
            await asyncio.to_thread(self.store.add_results, batch)
        except StoreError as exc:
            self.buffer = batch + self.buffer
            overflow = len(self.buffer) - MAX_BUFFERED_RESULTS
            if overflow > 0:  # bounded: memory must survive a long outage too
                del self.buffer[:overflow]
                self.log.error("results_dropped", count=overflow)
            self.store_failed("add_results", exc)
            return 0
        self.store_ok = True
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
