"""Several daemons on one PostgreSQL: the lease and its fencing token, the database's own
one-open-incident invariant, failover that keeps the clock, SQLite staying single-instance,
and the schema check. Real PostgreSQL (tests/pg.py), real sandbox, a manual clock."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pg
import pytest
from aiohttp.test_utils import TestServer
from chaoskit import MIN, T0, fault, incident, make_daemon, pair, step
from daemonkit import crash
from sqlalchemy import text

from detector.clock import ManualClock
from detector.model import ComponentStatus as Status
from detector.model import IncidentOpened, IncidentResolved, IncidentStatus, IncidentUpdate
from detector.store import SqlStore, StoreError, migrate, open_store
from detector.store.lease import Fence, Fenced

# postgres_server, pg_url, clock, sandbox and credentials come from conftest.py
pytestmark = pytest.mark.usefixtures("credentials")


# ------------------------------------------------------------------ the lease, on the store


def test_a_deposed_leaders_late_write_is_refused(pg_url: str) -> None:
    first, second = SqlStore(pg_url), SqlStore(pg_url)
    try:
        old = first.acquire_lease("a/1", T0, 10.0)
        assert old == Fence("a/1", 1)
        assert second.acquire_lease("b/2", T0 + 5, 10.0) is None  # still a's
        assert first.acquire_lease("a/1", T0 + 6, 10.0) == old  # renewal keeps the token
        new = second.acquire_lease("b/2", T0 + 17, 10.0)  # a paused past its lease
        assert new == Fence("b/2", 2)

        late = incident("inc-late", T0 + 18)
        with pytest.raises(Fenced, match="token 1 is stale"):
            first.commit_engine([IncidentOpened(late)], {"by": "a"}, {}, T0 + 18, old)
        assert first.list_incidents() == []
        assert first.load_engine_state() is None  # nothing of the refused write landed
        assert first.acquire_lease("a/1", T0 + 19, 10.0) is None  # and a cannot renew

        second.commit_engine([IncidentOpened(late)], {"by": "b"}, {}, T0 + 18, new)
        assert [i.id for i in first.list_incidents()] == ["inc-late"]
    finally:
        first.close()
        second.close()


def test_release_hands_the_lease_on_at_once(pg_url: str) -> None:
    store = SqlStore(pg_url)
    try:
        fence = store.acquire_lease("a/1", T0, 60.0)
        assert fence is not None
        store.release_lease(fence)
        assert store.acquire_lease("b/2", T0 + 1, 60.0) == Fence("b/2", 2)
        store.release_lease(fence)  # a stale release changes nothing
        assert store.acquire_lease("c/3", T0 + 2, 60.0) is None
    finally:
        store.close()


def test_the_database_allows_one_open_incident_per_series(store_url: str) -> None:
    store = open_store(store_url)
    try:
        first, twin = incident("inc-1", T0), incident("inc-2", T0 + 60)
        store.commit_engine([IncidentOpened(first)], {}, {}, T0)
        # Whatever the code does, a second open incident on (rule, component) is not stored,
        # nor are its updates, and the commit carrying it still writes the rest.
        update = IncidentUpdate(T0 + 120, IncidentStatus.IDENTIFIED, Status.MAJOR_OUTAGE, "x")
        store.commit_engine(
            [IncidentOpened(twin), IncidentResolved(twin, update)], {"n": 2}, {}, T0 + 120
        )
        assert [i.id for i in store.list_incidents()] == ["inc-1"]
        assert store.load_engine_state() == {"n": 2}
        with store.engine.begin() as connection, pytest.raises(Exception, match=r"(?i)unique"):
            connection.execute(
                text(
                    "INSERT INTO incidents (id, rule, component, title, cause, impact,"
                    " status, component_status, opened_at, markets) VALUES ('raw',"
                    " 'carrier-label-creation', 'carriers/dhl', 't', 'sustained',"
                    " 'major_outage', 'investigating', 'major_outage', 1, '[]')"
                )
            )
        done = IncidentUpdate(T0 + 180, IncidentStatus.RESOLVED, Status.OPERATIONAL, "ok")
        store.commit_engine([IncidentResolved(first, done)], {}, {}, T0 + 180)
        store.commit_engine([IncidentOpened(incident("inc-3", T0 + 240))], {}, {}, T0 + 240)
        assert [i.id for i in store.list_incidents(unresolved_only=True)] == ["inc-3"]
    finally:
        store.close()


# ------------------------------------------------------------------ daemons


async def test_two_daemons_one_leads_and_failover_keeps_the_clock(
    tmp_path: Path, sandbox: TestServer, clock: ManualClock, pg_url: str
) -> None:
    async with pair(tmp_path, sandbox, clock, pg_url) as (a, b):
        assert a.metrics.get("detector_is_leader") == 1
        assert b.metrics.get("detector_is_leader") == 0
        assert b.status().startswith("standby; 4 probes")
        await step(clock, [a, b])
        await fault(sandbox, "carriers/dhl")
        clock.advance(MIN)  # minute 2: the failure begins; both probe it ...
        for daemon in (a, b):
            await daemon.probe_all()
            await daemon.flush()
        await b.evaluate()  # ... the standby's warm engine starts the clock ...
        await crash(a)  # ... and the leader dies before it evaluated and saved it
        minutes = 2
        while not b.pipeline or not b.pipeline.leading():
            await step(clock, [b])
            minutes += 1
        assert minutes <= 8  # 5 min lease + a renewal
        assert b.metrics.get("detector_is_leader") == 1
        for _ in range(40 - minutes):
            await step(clock, [b])
        assert b.store is not None
        [opened] = b.store.list_incidents()
        assert opened.opened_at == T0 + 32 * MIN  # the original clock, from before failover
        assert opened.started_at in (None, T0 + 2 * MIN)  # None until the engine records it
        assert b.status() == "leader; 4 probes; 1 open incidents"


async def test_a_paused_leader_that_wakes_up_writes_nothing(
    tmp_path: Path, sandbox: TestServer, clock: ManualClock, pg_url: str
) -> None:
    async with pair(tmp_path, sandbox, clock, pg_url) as (a, b):
        await fault(sandbox, "carriers/dhl")
        for _ in range(3):
            await step(clock, [a, b])
        for _ in range(7):  # a is SIGSTOPped: b takes over when its lease runs out
            await step(clock, [b])
        assert b.pipeline is not None and b.pipeline.leading()
        # SIGCONT: a's own clock says its lease is past trust, so it acts as a standby ...
        assert a.pipeline is not None and not a.pipeline.leading()
        assert await a.evaluate() == []
        # ... and a write that was already under way when it froze is refused by the store.
        assert a.leadership is not None
        a.leadership._trusted_until = math.inf
        a.pipeline.engine.changed = True
        await a.evaluate()
        assert a.metrics.get("detector_is_leader") == 0
        assert not a.pipeline.leading()  # stepped down on the refusal
        await a.lead()
        assert not a.pipeline.leading()  # b's lease is running
        for _ in range(30):
            await step(clock, [a, b])
        assert b.store is not None
        assert len(b.store.list_incidents()) == 1
        assert b.metrics.get("detector_is_leader") == 1
        assert a.metrics.get("detector_is_leader") == 0


async def test_a_clean_stop_hands_over_without_waiting_for_the_lease(
    tmp_path: Path, sandbox: TestServer, clock: ManualClock, pg_url: str
) -> None:
    async with pair(tmp_path, sandbox, clock, pg_url) as (a, b):
        await a.shutdown()
        await b.lead()
        assert b.pipeline is not None and b.pipeline.leading()


async def test_a_standby_refuses_writes_naming_the_leader_as_the_place(
    tmp_path: Path, sandbox: TestServer, clock: ManualClock, pg_url: str
) -> None:
    async with pair(tmp_path, sandbox, clock, pg_url) as (_leader, b):
        assert b.control is not None
        with pytest.raises(ValueError, match="standby: send writes to the leader"):
            await b.control.cancel_maintenance("m-1")


async def test_a_second_daemon_on_one_sqlite_file_refuses_to_start(
    tmp_path: Path, sandbox: TestServer, clock: ManualClock
) -> None:
    url = f"sqlite:///{tmp_path}/one.db"
    first = make_daemon(tmp_path, sandbox, clock, url, "a", "")
    second = make_daemon(tmp_path, sandbox, clock, url, "b", "")
    await first.startup(schedule=False, serve=False)
    try:
        with pytest.raises(StoreError, match="in use by another detector daemon") as refused:
            await second.startup(schedule=False, serve=False)
        assert "\n" not in str(refused.value)
        assert "single-instance" in str(refused.value)
        assert first.metrics.get("detector_is_leader") == 1
    finally:
        await first.shutdown()
    third = make_daemon(tmp_path, sandbox, clock, url, "c", "")  # the lock went with it
    await third.startup(schedule=False, serve=False)
    await third.shutdown()


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "detector.cli", *args], capture_output=True, text=True, timeout=60
    )


def test_schema_older_or_newer_is_refused_naming_what_to_do(postgres_server: str) -> None:
    url = pg.create_database(postgres_server, f"schema_{id(postgres_server)}")
    head = migrate.head_revision()
    migrate.upgrade(url, "0002")
    with pytest.raises(StoreError, match=rf"not schema {head}: run `detector db upgrade`"):
        open_store(url)
    current = _cli("db", "current", "--store", url)
    assert current.returncode == 1
    assert current.stdout.strip() == f"schema 0002; this detector runs on {head}"
    assert _cli("db", "upgrade", "--store", url).returncode == 0
    assert _cli("db", "current", "--store", url).stdout.strip().startswith(f"schema {head};")
    open_store(url).close()

    store = SqlStore(url)
    with store.engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0099'"))
    store.close()
    with pytest.raises(StoreError, match="at schema 0099, newer than this detector knows"):
        open_store(url)


def test_a_sqlite_file_from_a_newer_detector_is_refused_in_one_line(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/newer.db"
    open_store(url).close()
    store = SqlStore(url)
    with store.engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0099'"))
    store.close()
    with pytest.raises(StoreError, match="at schema 0099, newer than this detector knows"):
        open_store(url)
    upgrade = _cli("db", "upgrade", "--store", url)
    assert upgrade.returncode == 1
    assert upgrade.stderr.count("\n") == 1 and "newer than this detector" in upgrade.stderr


def test_detector_run_twice_on_one_sqlite_file_says_so_in_one_line(tmp_path: Path) -> None:
    import os
    import time

    from daemonkit import write_config

    config = write_config(tmp_path, "http://127.0.0.1:9")
    lock = tmp_path / "detector.db.lock"
    env = {**os.environ, "TEST_SANDBOX_USER": "u", "TEST_SANDBOX_PASS": "p"}
    command = [sys.executable, "-m", "detector.cli", "run", "--config", str(config)]
    first = subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not (lock.exists() and lock.read_text().startswith("pid ")):
            assert time.monotonic() < deadline and first.poll() is None
            time.sleep(0.05)  # waiting for the first daemon to start, not for a duration
        second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
        assert second.returncode == 1
        assert second.stderr.endswith("several daemons need a PostgreSQL store\n")
        assert second.stderr.count("\n") == 1, second.stderr
        assert f"(pid {first.pid})" in second.stderr
    finally:
        first.terminate()
        assert first.wait(timeout=30) == 0
