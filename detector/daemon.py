"""The daemon shell: owns everything that runs (uvicorn's Config/Server split).

`Daemon(settings)` holds plain values; `startup()` opens the store, restores the engine,
starts the HTTP session, the scheduler and the API; `run()` waits for a signal; `shutdown()`
gives in-flight probes a grace period, cancels the rest, and writes what is buffered.
The engine only runs on the event loop thread; the store is called from worker threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
import zlib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger
from structlog.typing import FilteringBoundLogger

from detector import __version__
from detector.clock import Clock, SystemClock
from detector.engine.rulefile import RuleFileError, load_rules
from detector.engine.state import dump_state, load_state
from detector.metrics import Metrics
from detector.model import (
    ComponentStatus,
    Decision,
    Deploy,
    DeployFlaggedBad,
    IncidentOpened,
    IncidentResolved,
    IncidentStatus,
    IncidentUpdate,
    IncidentUpdated,
    Maintenance,
    ProbeResult,
    Rule,
)
from detector.settings import ConfigError, Settings, load_settings
from detector.store import open_store
from detector.store.base import ComponentRecord, NotFound, Store, StoreError
from detector.web.app import make_app
from probes.base import ProbeSpec, run_probe, trace_config

# Settings a reload cannot apply to a running daemon (sockets, store, logging, jobs, token).
_RESTART_ONLY = (
    "listen",
    "store",
    "evaluation_interval",
    "flush_interval",
    "log_format",
    "log_level",
    "page_name",
    "page_url",
    "api_token_env",
    "api_token_file",
)
MAX_BUFFERED_RESULTS = 500_000  # ~10k probes for 50 minutes of store outage


def probe_phase(spec: ProbeSpec, now: float) -> float:
    """The probe's next run: at a fixed offset within its interval, taken from its id.

    10,000 probes spread evenly over the minute instead of bursting together, and the
    schedule is the same after a restart or a reload (no burst on SIGHUP either).
    """
    offset = zlib.crc32(spec.id.encode()) / 2**32 * spec.interval
    return now + (offset - now) % spec.interval


class Daemon:
    def __init__(
        self,
        settings: Settings,
        *,
        log: FilteringBoundLogger,
        clock: Clock | None = None,
    ) -> None:
        self.settings = settings
        self.log = log
        self.clock: Clock = clock or SystemClock()
        self.metrics = Metrics(__version__)
        self.stopping = asyncio.Event()
        self.store: Store | None = None
        self.scheduler: AsyncIOScheduler | None = None
        self.session: aiohttp.ClientSession | None = None
        self.runner: web.AppRunner | None = None
        self.bound_port: int | None = None
        self._buffer: list[ProbeResult] = []
        self._pending: list[Decision] = []
        self._inflight: set[asyncio.Task[Any]] = set()
        self._eval_lock = asyncio.Lock()
        self._saved_statuses: dict[str, ComponentStatus] = {}
        self._store_ok = False
        self._rules: tuple[Rule, ...] = ()  # loaded by startup(): no I/O in the constructor

    # ------------------------------------------------------------------ lifecycle
    async def startup(self, *, schedule: bool = True, serve: bool = True) -> None:
        settings = self.settings
        self._rules = (await asyncio.to_thread(load_rules, settings.rule_paths())).rules
        self.store = await asyncio.to_thread(open_store, settings.store)
        await asyncio.to_thread(self.store.sync_components, self._component_records())
        state = await asyncio.to_thread(self.store.load_engine_state)
        horizon = max((rule.window for rule in self._rules), default=0.0)
        recent = await asyncio.to_thread(self.store.results_since, self.clock.now() - horizon)
        # Restored series wait for a result newer than this start before they act: the
        # time down counts as failing only if the failure is still there (DESIGN 9).
        self.engine = load_state(
            self._rules, state, recent, settings.component_names(), restored_at=self.clock.now()
        )
        self._store_ok = True
        self.metrics.set_leader(True)
        self.metrics.config_reloaded(True, self.clock.now())
        self.session = aiohttp.ClientSession(
            trace_configs=[trace_config()],
            connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300),
        )
        if serve:
            await self._serve()
        if schedule:
            self._start_scheduler()
        self.log.info(
            "daemon_started",
            version=__version__,
            probes=len(settings.probe_specs),
            rules=len(self._rules),
            listen=f"{settings.host}:{self.bound_port}",
            restored_series=len(self.engine.series),
            open_incidents=len(self.engine.open_incidents()),
        )

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        await self.startup()
        handled = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
        for signum in handled:
            loop.add_signal_handler(signum, self._on_signal, signum)
        try:
            await self.stopping.wait()
        finally:
            for signum in handled:
                loop.remove_signal_handler(signum)
            await self.shutdown()

    def _on_signal(self, signum: int) -> None:
        if signum == signal.SIGHUP:
            task = asyncio.ensure_future(self.reload())
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)
            return
        self.log.info("shutdown_requested", signal=signal.Signals(signum).name)
        self.stopping.set()

    async def shutdown(self) -> None:
        running = self.scheduler is not None and self.scheduler.running
        if self.scheduler is not None and running:
            self.scheduler.pause()  # no new runs; the executor would cancel in-flight ones
        if self._inflight:
            _, pending = await asyncio.wait(self._inflight, timeout=self.settings.shutdown_grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self.scheduler is not None and running:
            self.scheduler.shutdown(wait=False)
        if self.store is not None:
            await self.evaluate()
            await self.flush()
        if self.runner is not None:
            await self.runner.cleanup()
        if self.session is not None:
            await self.session.close()
        if self.store is not None:
            await asyncio.to_thread(self.store.close)
        self.log.info("daemon_stopped", buffered_results=len(self._buffer))

    async def _serve(self) -> None:
        app = make_app(
            store=self._store(),
            control=self,
            metrics=self.metrics,
            clock=self.clock,
            token=self.settings.api_token(),
            page_name=self.settings.page_name,
            page_url=self.settings.page_url,
        )
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.settings.host, self.settings.port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.bound_port = sockets[0].getsockname()[1] if sockets else self.settings.port

    def _start_scheduler(self) -> None:
        self.scheduler = AsyncIOScheduler(timezone=UTC)
        self._schedule_probes(self.settings.probe_specs)
        self.scheduler.add_job(
            self.evaluate,
            IntervalTrigger(seconds=self.settings.evaluation_interval),
            id="evaluate",
            max_instances=1,
            coalesce=True,
        )
        self.scheduler.add_job(
            self.flush,
            IntervalTrigger(seconds=self.settings.flush_interval),
            id="flush",
            max_instances=1,
            coalesce=True,
        )
        self.scheduler.add_job(
            self.prune, IntervalTrigger(hours=1), id="retention", max_instances=1, coalesce=True
        )
        self.scheduler.start()

    def _schedule_probes(self, specs: Sequence[ProbeSpec]) -> None:
        assert self.scheduler is not None
        now = time.time()
        for spec in specs:
            first = probe_phase(spec, now)
            self.scheduler.add_job(
                self._probe_job,
                IntervalTrigger(
                    seconds=spec.interval, start_date=datetime.fromtimestamp(first, tz=UTC)
                ),
                args=[spec],
                id=f"probe:{spec.id}",
                max_instances=1,
                coalesce=True,
                misfire_grace_time=max(1, int(spec.interval)),
                replace_existing=True,
            )

    # ------------------------------------------------------------------ jobs
    async def _probe_job(self, spec: ProbeSpec) -> None:
        with contextlib.suppress(asyncio.CancelledError):  # shutdown past the grace period
            await self.probe_once(spec)

    async def probe_once(self, spec: ProbeSpec) -> ProbeResult:
        assert self.session is not None
        task = asyncio.current_task()
        if task is not None:
            self._inflight.add(task)
        try:
            result = await run_probe(spec, session=self.session, log=self.log, clock=self.clock)
        finally:
            if task is not None:
                self._inflight.discard(task)
        self.metrics.observe_probe(result)
        self.engine.observe(result)
        self._buffer.append(result)
        if not result.ok:
            self.log.info(
                "probe_failed",
                probe=spec.id,
                component=spec.component,
                error=result.error,
                latency_s=round(result.latency_s or 0.0, 3),
            )
        return result

    async def probe_all(self) -> list[ProbeResult]:
        """Every configured probe once, concurrently (tests and benchmarks drive time)."""
        return list(await asyncio.gather(*(self.probe_once(s) for s in self.settings.probe_specs)))

    async def evaluate(self) -> list[Decision]:
        async with self._eval_lock:
            now = self.clock.now()
            started = time.perf_counter()
            try:
                decisions = self.engine.evaluate(now)
            except Exception:  # a bug must not stop evaluation forever; it is counted
                self.metrics.evaluation_failed()
                self.log.exception("evaluation_failed")
                return []
            self.metrics.observe_evaluation(time.perf_counter() - started)
            self._account(decisions)
            self._pending.extend(decisions)
            await self._commit(now)
            self._arm_deadline()
            return decisions

    async def _commit(self, now: float) -> None:
        statuses = self.engine.component_statuses(now, (c.id for c in self.settings.components))
        self.metrics.set_component_statuses(statuses)
        self.metrics.set_failure_durations(self.engine.failure_durations(now))
        self.metrics.set_open_incidents(self.engine.open_counts())
        if not (self._pending or self.engine.changed or statuses != self._saved_statuses):
            return
        state = dump_state(self.engine)
        pending = list(self._pending)
        try:
            await asyncio.to_thread(self._store().commit_engine, pending, state, statuses, now)
        except StoreError as exc:
            self._store_failed("commit_engine", exc)
            return
        self._store_ok = True
        del self._pending[: len(pending)]
        self.engine.changed = False
        self._saved_statuses = statuses

    def _account(self, decisions: Sequence[Decision]) -> None:
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

    def _arm_deadline(self) -> None:
        """Evaluate exactly at the next open/resolve deadline, not up to an interval late."""
        deadline = self.engine.next_deadline()
        if self.scheduler is None or not self.scheduler.running or deadline is None:
            return
        self.scheduler.add_job(
            self.evaluate,
            DateTrigger(run_date=datetime.fromtimestamp(max(deadline, time.time()), tz=UTC)),
            id="deadline",
            replace_existing=True,
            misfire_grace_time=60,
        )

    async def flush(self) -> int:
        """Write buffered results in one batch; on failure keep them for the next try."""
        batch, self._buffer = self._buffer, []
        if not batch:
            return 0
        try:
            await asyncio.to_thread(self._store().add_results, batch)
        except StoreError as exc:
            self._buffer = batch + self._buffer
            overflow = len(self._buffer) - MAX_BUFFERED_RESULTS
            if overflow > 0:  # bounded: memory must survive a long outage too
                del self._buffer[:overflow]
                self.log.error("results_dropped", count=overflow)
            self._store_failed("add_results", exc)
            return 0
        self._store_ok = True
        return len(batch)

    async def prune(self) -> int:
        before = self.clock.now() - self.settings.retention
        try:
            removed = await asyncio.to_thread(self._store().prune_results, before)
        except StoreError as exc:
            self._store_failed("prune_results", exc)
            return 0
        self.engine.calendar.forget_before(self.clock.now() - self.engine.calendar.DEPLOY_MEMORY_S)
        self.log.info("results_pruned", count=removed)
        return removed

    def _store_failed(self, action: str, exc: StoreError) -> None:
        self._store_ok = False
        self.metrics.store_error()
        self.log.error("store_error", action=action, error=str(exc))

    def _store(self) -> Store:
        assert self.store is not None, "startup() has not run"
        return self.store

    # ------------------------------------------------------------------ reload
    async def reload(self) -> tuple[bool, str]:
        source = self.settings.source
        try:
            settings = await asyncio.to_thread(load_settings, source)
            rules = await asyncio.to_thread(load_rules, settings.rule_paths())
        except (ConfigError, RuleFileError) as exc:
            self.metrics.config_reloaded(False, self.clock.now())
            self.log.error("reload_failed", error=str(exc))
            return False, str(exc)
        restart_only = [
            key for key in _RESTART_ONLY if getattr(settings, key) != getattr(self.settings, key)
        ]
        if restart_only:  # applied at the next start; say so rather than ignore it silently
            self.log.warning("reload_needs_restart", fields=restart_only)
        self.settings, self._rules = settings, rules.rules
        self.engine.set_rules(self._rules)
        self.engine.texts.component_names = settings.component_names()
        if self.scheduler is not None and self.scheduler.running:
            for job in self.scheduler.get_jobs():
                if job.id.startswith("probe:"):
                    job.remove()
            self._schedule_probes(settings.probe_specs)
        self.metrics.retain_probes([s.id for s in settings.probe_specs])
        with contextlib.suppress(StoreError):
            await asyncio.to_thread(self._store().sync_components, self._component_records())
        self.metrics.config_reloaded(True, self.clock.now())
        message = f"{len(settings.probe_specs)} probes, {len(rules.rules)} rules"
        self.log.info("reloaded", probes=len(settings.probe_specs), rules=len(rules.rules))
        await self.evaluate()
        return True, message

    def _component_records(self) -> list[ComponentRecord]:
        now = self.clock.now()
        return [
            ComponentRecord(
                c.id, c.name, c.group, c.description, ComponentStatus.OPERATIONAL, i, now
            )
            for i, c in enumerate(self.settings.components)
        ]

    # ------------------------------------------------------------------ Control (write API)
    async def record_deploy(self, deploy: Deploy) -> Deploy:
        await asyncio.to_thread(self._store().add_deploy, deploy)
        self.engine.add_deploy(deploy)
        self.log.info("deploy_recorded", deploy=deploy.id, components=list(deploy.components))
        await self.evaluate()
        return deploy

    async def flag_deploy_bad(self, deploy_id: str) -> Deploy:
        now = self.clock.now()
        deploy = await asyncio.to_thread(self._store().flag_deploy_bad, deploy_id, now)
        if self.engine.flag_deploy_bad(DeployFlaggedBad(now, deploy_id)) is None:
            self.engine.add_deploy(deploy)  # older than the engine remembers: learn it now
            self.engine.flag_deploy_bad(DeployFlaggedBad(now, deploy_id))
        self.log.warning("deploy_flagged_bad", deploy=deploy_id)
        await self.evaluate()
        return deploy

    async def update_incident(
        self, incident_id: str, status: IncidentStatus, body: str
    ) -> IncidentUpdate:
        async with self._eval_lock:
            now = self.clock.now()
            try:
                decisions = self.engine.manual_update(incident_id, status, body, now)
            except KeyError:
                await asyncio.to_thread(self._store().get_incident, incident_id)  # NotFound
                message = f"incident {incident_id} is resolved; it takes no updates"
                raise ValueError(message) from None
            self._account(decisions)
            self._pending.extend(decisions)
            await self._commit(now)
        self.log.info("incident_manual_update", incident=incident_id, status=str(status))
        update = next(
            (d.update for d in decisions if isinstance(d, IncidentUpdated | IncidentResolved)),
            None,
        )
        assert update is not None
        return update

    async def add_maintenance(self, m: Maintenance) -> Maintenance:
        stored = await asyncio.to_thread(self._store().add_maintenance, m)
        self.engine.add_maintenance(stored)
        self.log.info("maintenance_added", maintenance=stored.id, components=list(m.components))
        await self.evaluate()
        return stored

    async def cancel_maintenance(self, maintenance_id: str) -> None:
        now = self.clock.now()
        await asyncio.to_thread(self._store().cancel_maintenance, maintenance_id, now)
        self.engine.cancel_maintenance(maintenance_id)
        self.log.info("maintenance_cancelled", maintenance=maintenance_id)
        await self.evaluate()

    def readiness(self) -> Mapping[str, bool]:
        return {
            "store": self._store_ok,
            "rules": bool(self._rules),
            "scheduler": self.scheduler is not None and self.scheduler.running,
        }


__all__ = ["Daemon", "NotFound"]
