"""Store outages: keep probing, buffer (bounded, drops counted), not ready, reconnect with
backoff and jitter, write the buffer; a leader that loses the store steps down and a
standby leads. Real PostgreSQL and SQLite, real sandbox, manual clock."""

from __future__ import annotations

import socket
from pathlib import Path

import psycopg
import pytest
from aiohttp.test_utils import TestServer
from chaoskit import LONG_LEASE, fault, make_daemon, pair, step
from sqlalchemy.engine import make_url

from detector.clock import ManualClock
from detector.pipeline import MAX_FLUSH_BACKOFF_S
from detector.store import SqlStore

# postgres_server, pg_url, clock, sandbox and credentials come from conftest.py
pytestmark = pytest.mark.usefixtures("credentials")


def unreachable() -> SqlStore:
    """A PostgreSQL URL nothing listens on: connections are refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return SqlStore(f"postgresql+psycopg://postgres:pw@127.0.0.1:{port}/gone")


def count_results(url: str) -> int:
    store = SqlStore(url)
    try:
        return len(store.results_since(0.0))
    finally:
        store.close()


async def test_a_leader_that_loses_the_store_steps_down_and_writes_its_buffer_later(
    tmp_path: Path, sandbox: TestServer, clock: ManualClock, pg_url: str
) -> None:
    async with pair(tmp_path, sandbox, clock, pg_url) as (a, b):
        assert a.pipeline is not None and a.leadership is not None and a.control is not None
        assert b.pipeline is not None
        await fault(sandbox, "carriers/dhl")
        await step(clock, [a, b])
        reachable = a.pipeline.store
        a.pipeline.store = a.leadership.store = unreachable()  # a's network to the store is cut
        for _ in range(8):
            await step(clock, [a, b])
        assert not a.pipeline.leading()  # stepped down: no acting on stale state
        assert a.metrics.get("detector_is_leader") == 0
        assert a.control.readiness()["store"] is False  # /readyz answers 503
        assert len(a.pipeline.buffer) == 8 * 4  # still probing, every result kept
        assert b.pipeline.leading()  # the standby that still reaches the store leads

        a.pipeline.store.close()
        a.pipeline.store = a.leadership.store = reachable  # the network is back
        for _ in range(30):
            await step(clock, [a, b])
        assert a.pipeline.buffer == []
        assert a.control.readiness()["store"] is True
        assert not a.pipeline.leading() and b.pipeline.leading()
        assert count_results(pg_url) == 2 * 4 * 39  # nothing of the outage lost
        assert b.store is not None
        assert len(b.store.list_incidents()) == 1  # one episode, one incident


async def test_a_cut_connection_is_reopened_on_the_next_write(
    tmp_path: Path, sandbox: TestServer, clock: ManualClock, pg_url: str
) -> None:
    a = make_daemon(tmp_path, sandbox, clock, pg_url, "a", LONG_LEASE)
    await a.startup(schedule=False, serve=False)
    try:
        await step(clock, [a])
        parsed = make_url(pg_url)
        with psycopg.connect(
            host="127.0.0.1", port=parsed.port, user="postgres", dbname="postgres", autocommit=True
        ) as admin:
            cut = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> pg_backend_pid()",
                (parsed.database,),
            ).fetchone()
        assert cut is not None and cut[0] >= 1
        await step(clock, [a])
        assert a.pipeline is not None and a.pipeline.leading()
        assert count_results(pg_url) == 2 * 4
    finally:
        await a.shutdown()


async def test_the_buffer_is_bounded_and_drops_are_counted(
    tmp_path: Path,
    sandbox: TestServer,
    clock: ManualClock,
    store_url: str,
) -> None:
    a = make_daemon(tmp_path, sandbox, clock, store_url, "a", "max_buffered_results: 1000\n")
    await a.startup(schedule=False, serve=False)
    assert a.pipeline is not None
    try:
        results = await a.probe_all()
        a.pipeline.buffer.extend(results * 300)  # 1204 results waiting
        reachable, a.pipeline.store = a.pipeline.store, unreachable()
        assert await a.flush() == 0
        assert len(a.pipeline.buffer) == 1000  # the oldest went first
        assert a.metrics.get("detector_results_dropped_total") == 204
        a.pipeline.store.close()
        a.pipeline.store = reachable
        assert await a.flush() == 1000
    finally:
        await a.shutdown()


async def test_reconnect_attempts_back_off_with_jitter(
    tmp_path: Path, sandbox: TestServer, clock: ManualClock
) -> None:
    a = make_daemon(tmp_path, sandbox, clock, f"sqlite:///{tmp_path}/d.db", "a", "")
    await a.startup(schedule=False, serve=False)
    pipeline = a.pipeline
    assert pipeline is not None
    now = [0.0]
    pipeline.monotonic = lambda: now[0]
    reachable, pipeline.store = pipeline.store, unreachable()
    try:
        await a.probe_all()
        waits = []
        for _ in range(9):
            errors = a.metrics.get("detector_store_errors_total") or 0
            assert await pipeline.flush() == 0  # the scheduled flush: one attempt
            assert a.metrics.get("detector_store_errors_total") == errors + 1
            wait = pipeline._retry_at - now[0]
            waits.append(wait)
            await pipeline.flush()  # before the backoff is over: not even tried
            assert a.metrics.get("detector_store_errors_total") == errors + 1
            now[0] += wait
        backoffs = [min(MAX_FLUSH_BACKOFF_S, 2.0**n) for n in range(9)]
        for wait, backoff in zip(waits, backoffs, strict=True):
            assert backoff / 2 <= wait <= backoff  # jittered: no two daemons in step
        assert len(set(waits)) > 1
        pipeline.store.close()
        pipeline.store = reachable
        assert await pipeline.flush() == 4
        assert pipeline._retry_at == 0.0
    finally:
        await a.shutdown()
