"""The daemon shell: lifecycle, scheduling and signals (uvicorn's Config/Server split).

`startup()` opens the store, restores the engine, starts the HTTP session, the API and the
scheduler; `run()` waits for a signal; `shutdown()` gives in-flight probes a grace period,
cancels the rest and writes what is buffered. Results go through `detector.pipeline`,
operators' requests through `detector.control`, the leader lease through `detector.leader`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import signal
from collections.abc import Coroutine, Sequence
from datetime import UTC
from typing import Any

from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from structlog.typing import FilteringBoundLogger

from detector import __version__, leader
from detector.clock import Clock, SystemClock
from detector.clockwatch import ClockWatch, Monotonic
from detector.control import RESTART_ONLY, Control
from detector.engine import Engine
from detector.engine.rulefile import load_rules
from detector.metrics import Metrics
from detector.model import Decision, ProbeResult, Rule
from detector.notify.dispatcher import Dispatcher
from detector.pipeline import Pipeline
from detector.schedule import schedule_once, schedule_periodic, schedule_probes
from detector.sdnotify import Notifier
from detector.selfcheck import SelfCheck
from detector.settings import Settings
from detector.store import open_store
from detector.store.base import Store, StoreError
from detector.web.app import SNAPSHOTS, make_app
from detector.web.server import Limits, start_server
from probes.base import ProbeSpec, run_probe
from probes.tracing import ProbeSessions


class Daemon:
    def __init__(
        self,
        settings: Settings,
        *,
        log: FilteringBoundLogger,
        clock: Clock | None = None,
        monotonic: Monotonic | None = None,
    ) -> None:
        self.settings = settings
        self.log = log = log.bind()  # a lazy proxy (structlog.get_logger) costs on every call
        self.clock: Clock = clock or SystemClock()
        self.metrics = Metrics(__version__)
        self.stopping = asyncio.Event()
        self.store: Store | None = None
        self.pipeline: Pipeline | None = None
        self.control: Control | None = None
        self.dispatcher: Dispatcher | None = None  # when `notifications:` names channels
        self.self_check = SelfCheck(
            [c.id for c in settings.canary_specs], metrics=self.metrics, log=log
        )
        self.clock_watch = ClockWatch(self.clock, monotonic, on_step=self._clock_stepped, log=log)
        self.scheduler: AsyncIOScheduler | None = None
        self.sessions: ProbeSessions | None = None  # healthy runs untraced (probes.tracing)
        self.runner: web.AppRunner | None = None
        self.bound_port: int | None = None
        self._inflight: set[asyncio.Task[Any]] = set()  # probe runs, given a grace period
        self._tasks: set[asyncio.Task[Any]] = set()  # what the daemon started and awaits
        self._rules: tuple[Rule, ...] = ()  # loaded by startup(): no I/O in the constructor
        self.leadership: leader.Leadership | None = None
        self.notifier = Notifier()
        self._lock_file: Any = None  # SQLite: `<db>.lock`, held while running

    # ------------------------------------------------------------------ lifecycle
    async def startup(self, *, schedule: bool = True, serve: bool = True) -> None:
        try:
            await self._open(serve=serve)
        except BaseException:  # a failed start leaves no session, socket or store open
            await self._close()
            raise
        await self.lead()
        if schedule:
            self._start_scheduler()
            if self.dispatcher is not None:
                self.spawn(self.dispatcher.run(self.stopping), "notifications")
            self.spawn(leader.watchdog(self.notifier, self.stopping), "watchdog")
        self.notifier.ready(self.status())
        self.log.info(
            "daemon_started",
            version=__version__,
            instance=self.settings.instance,
            probes=len(self.settings.probe_specs),
            canaries=len(self.settings.canary_specs),
            rules=len(self._rules),
            listen=f"{self.settings.host}:{self.bound_port}",
            restored_series=len(self.engine.series),
            open_incidents=len(self.engine.open_incidents()),
        )

    async def _open(self, *, serve: bool) -> None:
        settings = self.settings
        self._rules = (await asyncio.to_thread(load_rules, settings.rule_paths())).rules
        self._lock_file = leader.lock_sqlite(settings.store)
        store = self.store = await asyncio.to_thread(open_store, settings.store)
        await asyncio.to_thread(store.sync_components, settings.component_records(self.clock.now()))
        # Restored series wait for a result newer than this start before they act: the
        # time down counts as failing only if the failure is still there (DESIGN 9).
        now, names = self.clock.now(), settings.component_names()
        engine = await asyncio.to_thread(leader.stored_engine, store, self._rules, names, now, now)
        monotonic, metrics = self.clock_watch.monotonic, self.metrics
        self.leadership = leader.Leadership.of(
            store, settings, self.clock, monotonic, log=self.log, metrics=metrics
        )
        self.pipeline = Pipeline(
            engine,
            store,
            metrics=self.metrics,
            log=self.log,
            clock=self.clock,
            components=[c.id for c in settings.components],
            retention=settings.retention,
            leadership=self.leadership,
            instance=settings.instance,
            max_buffered=settings.max_buffered_results,
        )
        self.control = Control(self, self.pipeline, evaluate=self.evaluate, log=self.log)
        await self.control.sync_recurring()
        self.metrics.config_reloaded(True, self.clock.now())
        self.sessions = ProbeSessions()
        if settings.notifications:
            self.dispatcher = Dispatcher.for_daemon(self, store, self.sessions.plain, self.pipeline)
        if serve:
            await self._serve()

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
            self.spawn(self._control().reload(), "reload")
            return
        self.log.info("shutdown_requested", signal=signal.Signals(signum).name)
        self.notifier.stopping()
        self.stopping.set()

    def spawn(self, work: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Start a task the daemon owns: held until done, its failure logged, awaited at
        shutdown (a task nobody references can be garbage-collected mid-way)."""
        task = asyncio.get_running_loop().create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.log.error("task_failed", task=task.get_name(), error=repr(task.exception()))

    async def shutdown(self) -> None:
        self.stopping.set()  # tasks that wait for it (the dispatcher) end
        running = self.scheduling()
        if self.scheduler is not None and running:
            self.scheduler.pause()  # no new runs; the executor would cancel in-flight ones
        await self.clock_watch.stop()
        if self._inflight:
            _, pending = await asyncio.wait(self._inflight, timeout=self.settings.shutdown_grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._tasks:  # e.g. a reload under way: let it finish (it is short)
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.scheduler is not None and running:
            self.scheduler.shutdown(wait=False)
        if self.pipeline is not None:
            await self.evaluate()
            await self.pipeline.flush(force=True)
        if self.leadership is not None:
            await self.leadership.release()
        await self._close()
        buffered = len(self.pipeline.buffer) if self.pipeline is not None else 0
        self.log.info("daemon_stopped", buffered_results=buffered)

    async def _close(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None
        if self.sessions is not None:
            await self.sessions.close()
            self.sessions = None
        if self.store is not None:
            await asyncio.to_thread(self.store.close)
        self._lock_file = self._lock_file and self._lock_file.close()  # releases the flock

    async def _serve(self) -> None:
        settings = self.settings
        app = make_app(
            store=self._store(),
            control=self._control(),
            metrics=self.metrics,
            clock=self.clock,
            token=None,
            tokens=settings.named_api_tokens(),
            page_name=settings.page_name,
            page_url=settings.page_url,
            page_language=settings.page_language,
        )
        self._pipeline().committed.append(app[SNAPSHOTS].refresh)  # readers see each commit
        limits = Limits(
            header_timeout=settings.header_timeout, max_connections=settings.max_connections
        )
        self.runner, self.bound_port = await start_server(app, settings.host, settings.port, limits)

    # ------------------------------------------------------------------ scheduling
    def _start_scheduler(self) -> None:
        self.scheduler = AsyncIOScheduler(timezone=UTC)
        self._schedule_all()
        self.scheduler.start()
        self.clock_watch.start()

    def _schedule_all(self) -> None:
        """Every job, from the wall clock as it reads now (also after it stepped)."""
        assert self.scheduler is not None
        now = self.clock.now()
        self._schedule_probes(self.settings.probe_specs, now)
        self._schedule_probes(self.settings.canary_specs, now, canary=True)
        settings = self.settings
        jobs = (
            ("evaluate", self.evaluate, settings.evaluation_interval),
            ("flush", self._pipeline().flush, settings.flush_interval),  # with its backoff
            ("retention", self.prune, 3600.0),
            ("lease", self.lead, settings.lease_ttl / 3),
            ("recurring-maintenance", self._control().sync_recurring, 60.0),
        )
        schedule_periodic(self.scheduler, jobs, now)

    def _schedule_probes(
        self, specs: Sequence[ProbeSpec], now: float, *, canary: bool = False
    ) -> None:
        assert self.scheduler is not None
        job = self._canary_job if canary else self._probe_job
        schedule_probes(self.scheduler, job, specs, now, prefix="canary" if canary else "probe")

    def _clock_stepped(self, seconds: float) -> None:
        # APScheduler 3 keeps next run times in wall time: after a step back every job would
        # wait out the step. Rebuild the schedule from the wall clock as it reads now.
        if self.scheduling():
            self._schedule_all()
            self._arm_deadline()

    def scheduling(self) -> bool:
        return bool(self.scheduler and self.scheduler.running)

    # ------------------------------------------------------------------ jobs
    async def _probe_job(self, spec: ProbeSpec) -> None:
        with contextlib.suppress(asyncio.CancelledError):  # shutdown past the grace period
            await self.probe_once(spec)

    async def _canary_job(self, spec: ProbeSpec) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await self.canary_once(spec)

    async def _run(self, spec: ProbeSpec) -> ProbeResult:
        sessions = self.sessions
        assert sessions is not None
        task = asyncio.current_task()
        if task is not None:
            self._inflight.add(task)
        try:
            session, instance = sessions.session_for(spec), self.settings.instance
            result = await run_probe(
                spec, session=session, log=self.log, clock=self.clock, instance=instance
            )
        finally:
            if task is not None:
                self._inflight.discard(task)
        sessions.settle(spec, result)
        return result

    async def probe_once(self, spec: ProbeSpec) -> ProbeResult:
        result = await self._run(spec)
        if self.self_check.suspect:  # rare: a copy only while the instance is suspect
            result = dataclasses.replace(result, suspect=True)
        self._pipeline().observe(result)
        if not result.ok:
            self.log.info(
                "probe_failed",
                probe=spec.id,
                component=spec.component,
                result=result.result,
                error=result.error,
                latency_s=round(result.latency_s or 0.0, 3),
            )
        return result

    async def canary_once(self, spec: ProbeSpec) -> ProbeResult:
        """A self-check canary: it judges this instance, not the platform."""
        result = await self._run(spec)
        self.self_check.observe(result)
        return result

    async def probe_all(self) -> list[ProbeResult]:
        """Canaries, then every probe once, concurrently (tests and benchmarks drive time)."""
        canaries = self.settings.canary_specs
        await asyncio.gather(*(self.canary_once(spec) for spec in canaries))
        return list(await asyncio.gather(*(self.probe_once(s) for s in self.settings.probe_specs)))

    async def evaluate(self) -> list[Decision]:
        decisions = await self._pipeline().evaluate()
        self._arm_deadline()
        return decisions

    async def flush(self) -> int:
        """Write the buffer now, whatever the reconnect backoff says."""
        return await self._pipeline().flush(force=True)

    async def lead(self) -> None:
        """Renew (or take) the leader lease; tell systemd how this instance stands."""
        await leader.hold_lease(self._pipeline(), self._rules, self.settings.component_names())
        self.notifier.status(self.status())

    def status(self) -> str:
        probes, incidents = len(self.settings.probe_specs), len(self.engine.open_incidents())
        return leader.status_line(self._pipeline().leading(), probes, incidents)

    async def prune(self) -> int:
        return await self._pipeline().prune()

    def _arm_deadline(self) -> None:
        """Evaluate exactly at the next open/resolve deadline, not up to an interval late."""
        deadline = self.engine.next_deadline()
        if self.scheduler is not None and self.scheduler.running and deadline is not None:
            schedule_once(
                self.scheduler, self.evaluate, max(deadline, self.clock.now()), "deadline"
            )

    # ------------------------------------------------------------------ reload (Host)
    async def apply(self, settings: Settings, rules: Sequence[Rule]) -> None:
        """New config and rules, as `Control.reload` validated them."""
        pipeline = self._pipeline()
        # What only a restart applies stays as it runs (and reload keeps saying so).
        settings = settings.model_copy(update={k: getattr(self.settings, k) for k in RESTART_ONLY})
        self.settings, self._rules = settings, tuple(rules)
        names, components = settings.component_names(), [c.id for c in settings.components]
        pipeline.reconfigure(self._rules, names, components, settings.retention)
        self.self_check.set_canaries([c.id for c in settings.canary_specs])
        if self.scheduler is not None and self.scheduler.running:
            for job in self.scheduler.get_jobs():
                if job.id.startswith(("probe:", "canary:")):
                    job.remove()
            now = self.clock.now()
            self._schedule_probes(settings.probe_specs, now)
            self._schedule_probes(settings.canary_specs, now, canary=True)
        self.metrics.retain_probes([s.id for s in settings.probe_specs])
        if self.sessions is not None:
            self.sessions.retain({s.id for s in (*settings.probe_specs, *settings.canary_specs)})
        records = settings.component_records(self.clock.now())
        with contextlib.suppress(StoreError):
            await asyncio.to_thread(self._store().sync_components, records)

    @property
    def engine(self) -> Engine:
        return self._pipeline().engine

    async def reload(self) -> tuple[bool, str]:
        return await self._control().reload()

    def _store(self) -> Store:
        assert self.store is not None, "startup() has not run"
        return self.store

    def _pipeline(self) -> Pipeline:
        assert self.pipeline is not None, "startup() has not run"
        return self.pipeline

    def _control(self) -> Control:
        assert self.control is not None, "startup() has not run"
        return self.control


__all__ = ["Daemon"]
