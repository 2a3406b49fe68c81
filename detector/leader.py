"""Who evaluates: the leader lease (PostgreSQL) or the one daemon of a SQLite file.

Every daemon probes and writes its results. On PostgreSQL exactly one of them, the holder
of the `leases` row, evaluates for real and writes incidents, component statuses and engine
state, each write checked against its fencing token in the same transaction
(`detector.store.lease`). The others stand by with a warm engine: they observe every
instance's results and evaluate too, but write nothing, so a failure that began before a
failover keeps its clock. A lease is trusted only while a renewal is recent by the
monotonic clock, so a paused or cut-off leader stops acting before another can take over.

On SQLite a lock file (`<db>.lock`, flock) keeps a second daemon off the same file.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from sqlalchemy.engine import make_url
from structlog.typing import FilteringBoundLogger

from detector.clock import Clock
from detector.engine import Engine
from detector.engine.state import load_state
from detector.metrics import Metrics
from detector.model import Rule
from detector.pipeline import Pipeline
from detector.sdnotify import Notifier
from detector.settings import Settings
from detector.store.base import PeerRow, Store, StoreError
from detector.store.lease import Fence

# A lease is acted on for this share of its TTL after the renewal that granted it began:
# the rest is the margin for the renewal's own round trip and for clock rates.
TRUST_SHARE = 0.8


class Leadership:
    """The lease as this daemon sees it. `shared=False` (SQLite): always the leader."""

    def __init__(
        self,
        store: Store,
        *,
        instance: str,
        ttl: float,
        clock: Clock,
        log: FilteringBoundLogger,
        metrics: Metrics,
        shared: bool,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.instance = instance
        # Unique per process: a restarted daemon with the same instance name is a new holder.
        self.holder = f"{instance}/{os.getpid()}/{secrets.token_hex(4)}"
        self.ttl = ttl
        self.clock = clock
        self.log = log
        self.metrics = metrics
        self.shared = shared
        self.monotonic = monotonic
        self.fence: Fence | None = None
        self._trusted_until = 0.0
        self.takeovers = 0
        metrics.set_leader(not shared)

    @classmethod
    def of(
        cls, store: Store, settings: Settings, clock: Clock, monotonic: Callable[[], float], *,
        log: FilteringBoundLogger, metrics: Metrics,
    ) -> Leadership:  # fmt: skip
        """The daemon's: its instance and lease TTL; shared on a PostgreSQL store."""
        return cls(
            store,
            instance=settings.instance,
            ttl=settings.lease_ttl,
            clock=clock,
            log=log,
            metrics=metrics,
            shared=is_shared(settings.store),
            monotonic=monotonic,
        )

    def is_leader(self) -> bool:
        if not self.shared:
            return True
        return self.fence is not None and self.monotonic() < self._trusted_until

    def write_fence(self) -> Fence | None:
        """The fence a leader write carries (None on SQLite)."""
        return self.fence if self.shared else None

    async def renew(self) -> bool:
        """Renew or try to take the lease; True when this renewal made us the leader
        (the caller then rebuilds the engine from the store before acting)."""
        if not self.shared:
            return False
        was = self.is_leader()
        started = self.monotonic()
        try:
            fence = await asyncio.to_thread(
                self.store.acquire_lease, self.holder, self.clock.now(), self.ttl
            )
        except StoreError as exc:
            self.metrics.store_error()
            self.log.error("store_error", action="renew_lease", error=str(exc))
            fence = None
        old, self.fence = self.fence, fence
        if fence is not None:
            self._trusted_until = started + self.ttl * TRUST_SHARE
        became = fence is not None and (not was or old is None or old.token != fence.token)
        if fence is not None and became:
            self.takeovers += 1
            self.log.warning("leader_acquired", holder=self.holder, token=fence.token)
        elif old is not None and fence is None:  # lost, or found expired on waking up
            self.step_down("lease lost" if was else "lease expired")
        self.metrics.set_leader(self.is_leader())
        return became

    def step_down(self, reason: str) -> None:
        self.log.warning("leader_lost", holder=self.holder, reason=reason)
        self.fence = None
        self.metrics.set_leader(not self.shared)

    async def release(self) -> None:
        """A clean stop hands the lease on at once instead of after its TTL."""
        fence, self.fence = self.fence, None
        if self.shared and fence is not None:
            try:
                await asyncio.to_thread(self.store.release_lease, fence)
            except StoreError as exc:
                self.log.error("store_error", action="release_lease", error=str(exc))
            self.metrics.set_leader(False)


def stored_engine(
    store: Store,
    rules: Sequence[Rule],
    component_names: Mapping[str, str],
    now: float,
    restored_at: float | None = None,
) -> Engine:
    """The engine as stored: saved state, windows rebuilt from every instance's results."""
    state = store.load_engine_state()
    recent = store.results_since(now - _horizon(rules))
    return load_state(rules, state, recent, component_names, restored_at=restored_at)


def _horizon(rules: Sequence[Rule]) -> float:
    return max((rule.window for rule in rules), default=0.0)


def warm_engine(
    store: Store,
    rules: Sequence[Rule],
    shadow: Engine,
    component_names: Mapping[str, str],
    *,
    now: float,
    peer_since: float,
    instance: str,
) -> tuple[Engine, list[PeerRow]]:
    """A new leader's engine: the stored state (the incidents the last leader opened, with
    their ids), windows rebuilt from every instance's stored results, and the clocks of
    failures this standby saw begin that the last leader had not saved yet; with the other
    instances' rows written after `peer_since` that those windows hold
    (`Store.takeover_read`: one snapshot)."""
    read = store.takeover_read(now - _horizon(rules), peer_since, instance)
    engine = load_state(rules, read.state, read.results, component_names)
    for key, series in engine.series.items():
        seen = shadow.series.get(key)
        if seen is None or series.failing_since is not None or series.watch.incident is not None:
            continue
        if seen.failing_since is not None:
            series.failing, series.status = seen.failing, seen.status
            series.failing_since, series.deploy_cause = seen.failing_since, seen.deploy_cause
            engine.changed = True
    return engine, read.peers


def _sqlite_path(url: str) -> Path | None:
    parsed = make_url(url)
    database = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or database in ("", ":memory:"):
        return None
    if parsed.query.get("uri") == "true":
        return None
    return Path(database)


def is_shared(url: str) -> bool:
    return make_url(url).get_backend_name() == "postgresql"


def lock_sqlite(url: str) -> IO[Any] | None:
    """Hold `<db>.lock` for the daemon's life; StoreError when another daemon holds it.
    The kernel drops the lock when the process dies, even on kill -9."""
    path = _sqlite_path(url)
    if path is None:
        return None
    lock_path = path.with_name(path.name + ".lock")
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(lock_path, "a+")  # noqa: SIM115 - held open until the daemon stops
    except OSError as error:
        raise StoreError(f"cannot open lock file {lock_path}: {error.strerror}") from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise StoreError(
            f"{path} is in use by another detector daemon ({holder}): SQLite is "
            "single-instance; several daemons need a PostgreSQL store"
        ) from None
    handle.truncate(0)
    handle.write(f"pid {os.getpid()}\n")
    handle.flush()
    return handle


async def hold_lease(
    pipeline: Pipeline, rules: Sequence[Rule], component_names: Mapping[str, str]
) -> None:
    """Renew the lease; on a takeover, rebuild the engine from the store before acting.
    Under the pipeline lock, so no evaluation runs between the two."""
    leadership = pipeline.leadership
    if leadership is None:
        return
    async with pipeline.lock:
        if not await leadership.renew():
            return
        pipeline.drain()  # into the warm engine, which the rebuilt one takes its clocks from
        try:
            await pipeline.flush(force=True)  # our own results belong in the rebuilt windows
            # Peers read as every evaluation does (by written_at, from the watermark), in the
            # same snapshot as the windows: those rows count as fed, a later commit does not.
            since = pipeline.peer_since()
            engine, rows = await asyncio.to_thread(
                warm_engine,
                pipeline.store,
                rules,
                pipeline.engine,
                component_names,
                now=pipeline.clock.now(),
                peer_since=since,
                instance=pipeline.instance,
            )
        except StoreError as exc:
            pipeline.store_failed("take_over", exc)
            leadership.step_down("store unreachable during takeover")
            return
        pipeline.replace_engine(engine, rows, since)
        leadership.log.info(
            "leader_ready", series=len(engine.series), open_incidents=len(engine.open_incidents())
        )


def status_line(leading: bool, probes: int, open_incidents: int) -> str:
    role = "leader" if leading else "standby"
    return f"{role}; {probes} probes; {open_incidents} open incidents"


async def watchdog(notifier: Notifier, stopping: asyncio.Event) -> None:
    """WATCHDOG=1 from the event loop itself: a hung loop stops the pings, systemd restarts
    the daemon, and its lease (renewed from the same loop) runs out for another to take."""
    interval = notifier.watchdog_interval
    while interval is not None and not stopping.is_set():
        notifier.watchdog()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), interval)
