"""Peers' results written late still reach the leader's windows: results carry `written_at`
(the writer's flush), the leader reads other instances' results by it from a watermark, feeds
each row once and forgets the ids it can no longer read. Real PostgreSQL shared by two
in-process daemons on one manual clock; the stamp and the migration on SQLite and PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pg
import pytest
from aiohttp.test_utils import TestServer
from chaoskit import MIN, fault, pair
from factories import T0, make_result
from sqlalchemy import create_engine, inspect, text

from detector.cli import main
from detector.clock import ManualClock
from detector.daemon import Daemon
from detector.engine.series import Series
from detector.pipeline import PEER_LOOKBACK_S, Pipeline
from detector.store import SqlStore, migrate, open_store

# postgres_server, pg_url, clock, sandbox and credentials come from conftest.py
pytestmark = pytest.mark.usefixtures("credentials")

# A 10-minute window that needs 8 results: a peer's 6 minutes of DHL runs (2 markets a
# round) are enough only when all of them reach the leader, not just the last 2 minutes'.
RULES = """
defaults: {window: 10m, min_results: 8, open_after: 30m, resolve_after: 10m}
rules:
  - name: carrier-label-creation
    match: {kind: label_creation, component: "carriers/*"}
    impact:
      - {status: major_outage, when: error_ratio >= 0.9}
"""


def _pipeline(daemon: Daemon) -> Pipeline:
    assert daemon.pipeline is not None
    return daemon.pipeline


def _dhl(daemon: Daemon) -> Series:
    found = [s for s in _pipeline(daemon).engine.series.values() if s.component == "carriers/dhl"]
    assert len(found) == 1, found
    return found[0]


def _window_times(daemon: Daemon, instance: str) -> list[float]:
    engine = _pipeline(daemon).engine
    if not any(s.component == "carriers/dhl" for s in engine.series.values()):
        return []
    window = _dhl(daemon).windows.get(instance)
    return [] if window is None else [entry.at for entry in window.entries]


def _stored_times(store: str, instance: str) -> list[float]:
    engine = create_engine(store)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                text(
                    "SELECT at FROM probe_results WHERE instance = :i"
                    " AND component = 'carriers/dhl' ORDER BY at"
                ),
                {"i": instance},
            )
            return [row[0] for row in rows]
    finally:
        engine.dispose()


# ------------------------------------------------------------------ late results, two daemons


async def test_results_a_peer_writes_300s_late_count_in_the_leaders_next_evaluation(
    tmp_path: Path, sandbox: TestServer, clock: ManualClock, pg_url: str
) -> None:
    async with pair(tmp_path, sandbox, clock, pg_url, rules=RULES) as (a, b):
        await fault(sandbox, "carriers/dhl")
        # b probes DHL for 6 minutes without reaching the store (its buffer holds the runs);
        # the leader a, which runs no probes here, keeps leading and evaluating.
        for _ in range(6):
            clock.advance(MIN)
            await b.probe_all()
            await a.lead()
            await a.evaluate()
        assert _pipeline(a).leading() and not _pipeline(b).leading()
        assert _window_times(a, "b") == []
        assert len(_pipeline(b).buffer) == 6 * 4

        clock.advance(5)  # the store is back: b writes its runs of 305 .. 5 s ago
        assert await b.flush() == 6 * 4
        stored = _stored_times(pg_url, "b")
        assert len(stored) == 12 and stored[0] == clock.now() - 305
        await a.lead()
        await a.evaluate()
        assert _window_times(a, "b") == stored  # every one, not only the last 2 minutes'
        series = _dhl(a)
        assert series.failing and series.failing_since is not None  # 12 results >= 8

        # Rows are fed once: another evaluation with nothing new feeds nothing ...
        assert await _pipeline(a).ingest_peers() == 0
        await a.evaluate()
        assert _window_times(a, "b") == stored
        # ... and the next flush feeds exactly its own rows.
        clock.advance(MIN)
        await b.probe_all()
        assert await b.flush() == 4
        assert await _pipeline(a).ingest_peers() == 4
        await a.evaluate()
        assert _window_times(a, "b") == _stored_times(pg_url, "b")
        assert len(set(_window_times(a, "b"))) == 14 // 2  # one per market a round


async def test_the_leader_reads_from_its_watermark_and_forgets_ids_it_cannot_read_again(
    tmp_path: Path, sandbox: TestServer, clock: ManualClock, pg_url: str
) -> None:
    async with pair(tmp_path, sandbox, clock, pg_url, rules=RULES) as (a, b):
        pipeline = _pipeline(a)
        for _ in range(15):  # b probes and writes every minute; a leads and evaluates
            clock.advance(MIN)
            await b.probe_all()
            await b.flush()
            await a.lead()
            await a.evaluate()
        # The mark is b's last flush; the ids kept are those a read can still return.
        assert pipeline.peer_since() == clock.now() - PEER_LOOKBACK_S
        assert b.store is not None
        readable = b.store.peer_results(pipeline.peer_since(), "a")
        assert 0 < len(readable) <= 3 * 4  # two minutes of b's flushes, not fifteen
        assert set(pipeline._peer_seen) >= {row.id for row in readable}
        assert len(pipeline._peer_seen) <= 4 * 4
        # Every DHL run b wrote inside the 10-minute window, each once.
        horizon = clock.now() - 10 * MIN
        assert _window_times(a, "b") == [t for t in _stored_times(pg_url, "b") if t > horizon]


async def test_a_peer_clock_running_ahead_does_not_push_the_watermark_past_now(
    tmp_path: Path, sandbox: TestServer, clock: ManualClock, pg_url: str
) -> None:
    async with pair(tmp_path, sandbox, clock, pg_url, rules=RULES) as (a, _peer):
        store = open_store(pg_url)
        try:
            pipeline = _pipeline(a)
            clock.advance(MIN)
            now = clock.now()
            # "c" stamps with a clock an hour ahead; b, a little behind, writes after it.
            store.add_results([make_result(now - 1, instance="c")], written_at=now + 3600)
            await a.lead()
            assert await pipeline.ingest_peers() == 1
            assert pipeline.peer_since() == now - PEER_LOOKBACK_S
            store.add_results([make_result(now - 2, instance="b")], written_at=now - 3)
            assert await pipeline.ingest_peers() == 1  # still read: the mark stayed at a's now
            later = clock.advance(5 * MIN)
            store.add_results([make_result(later - 2, instance="b")], written_at=later - 1)
            assert await pipeline.ingest_peers() == 1  # and the id of b's first row is forgotten
            clock.advance(-10 * MIN)  # a's own clock steps back: nothing is read twice
            assert await pipeline.ingest_peers() == 0
            assert pipeline.peer_since() == later - PEER_LOOKBACK_S  # where the last read began
        finally:
            store.close()


async def test_a_new_leader_does_not_feed_again_what_its_rebuilt_windows_hold(
    tmp_path: Path, sandbox: TestServer, clock: ManualClock, pg_url: str
) -> None:
    async with pair(tmp_path, sandbox, clock, pg_url, rules=RULES) as (a, b):
        for _ in range(3):
            clock.advance(MIN)
            for daemon in (a, b):
                await daemon.probe_all()
                await daemon.flush()
            await a.lead()
            await b.lead()
            await a.evaluate()
            await b.evaluate()
        await a.shutdown()  # a clean stop hands the lease over at once
        await b.lead()  # takeover: windows rebuilt from the store, peers' rows marked fed
        assert _pipeline(b).leading()
        assert await _pipeline(b).ingest_peers() == 0
        await b.evaluate()
        assert _window_times(b, "a") == _stored_times(pg_url, "a")
        assert _window_times(b, "b") == _stored_times(pg_url, "b")


# ------------------------------------------------------------------ the stamp


def _written(store: SqlStore) -> list[tuple[float, float]]:
    with store.engine.connect() as connection:
        query = text("SELECT at, written_at FROM probe_results ORDER BY id")
        return [(row[0], row[1]) for row in connection.execute(query)]


def test_add_results_stamps_the_given_time_or_each_results_own(store_url: str) -> None:
    store = open_store(store_url)
    try:
        history = [make_result(T0 + n) for n in range(3)]
        store.add_results(history)  # None: as if written when they happened
        assert _written(store) == [(T0 + n, T0 + n) for n in range(3)]
        # 33 rows: one whole multi-row INSERT chunk on SQLite and a row after it.
        batch = [make_result(T0 + 100 + n) for n in range(33)]
        store.add_results(batch, written_at=T0 + 500)
        assert _written(store)[3:] == [(T0 + 100 + n, T0 + 500) for n in range(33)]
        # What a read returns is unchanged: results, not the stamp.
        assert [r.at for r in store.results_since(T0 + 99)] == [r.at for r in batch]
        [row] = store.peer_results(T0 + 499, "other")[-1:]
        assert (row.written_at, row.result) == (T0 + 500, batch[-1])
    finally:
        store.close()


def test_a_reread_of_the_overlap_returns_rows_only_from_the_oldest_one_not_fed(
    store_url: str,
) -> None:
    store = open_store(store_url)
    try:
        for n in range(3):  # three flushes of peer b, 5 s apart; one of a's own
            store.add_results([make_result(T0 + n, instance="b")] * 2, written_at=T0 + 5 * n)
        store.add_results([make_result(T0, instance="a")], written_at=T0 + 11)
        rows = store.peer_results(T0 - 1, "a")
        assert [row.written_at for row in rows] == [T0, T0, T0 + 5, T0 + 5, T0 + 10, T0 + 10]
        fed = {row.id for row in rows}
        assert store.peer_results(T0 - 1, "a", fed) == []  # nothing new: ids only, no rows
        # A batch stamped inside the overlap commits late: read from its stamp on.
        store.add_results([make_result(T0 + 3, instance="c")], written_at=T0 + 7)
        again = store.peer_results(T0 - 1, "a", fed)
        assert [(row.written_at, row.result.instance) for row in again] == [
            (T0 + 7, "c"),
            (T0 + 10, "b"),
            (T0 + 10, "b"),
        ]
    finally:
        store.close()


# ------------------------------------------------------------------ the migration


def _insert_v0005_rows(url: str) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            for n, instance in enumerate(("a", "b")):
                connection.execute(
                    text(
                        "INSERT INTO probe_results (at, probe, kind, component, ok, labels,"
                        " phases, failure_kind, instance, suspect) VALUES (:at, 'p', 'http',"
                        " 'sendcloud/api', false, '{}', '{}', 'error', :instance, false)"
                    ),
                    {"at": T0 + n, "instance": instance},
                )
    finally:
        engine.dispose()


def _check_upgraded(url: str) -> None:
    assert migrate.current_revision(url) == migrate.head_revision()
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                text("SELECT at, written_at, instance FROM probe_results ORDER BY at")
            ).all()
            indexes = {ix["name"] for ix in inspect(connection).get_indexes("probe_results")}
            written_at = {c["name"]: c for c in inspect(connection).get_columns("probe_results")}
    finally:
        engine.dispose()
    assert [tuple(row) for row in rows] == [(T0, T0, "a"), (T0 + 1, T0 + 1, "b")]
    assert "ix_probe_results_written_at" in indexes
    assert written_at["written_at"]["nullable"] is False
    store = open_store(url)
    try:
        [old, _] = store.results_since(0)
        assert (old.at, old.failure_kind, old.instance) == (T0, "error", "a")
        assert [row.written_at for row in store.peer_results(0, "b")] == [T0]
    finally:
        store.close()


def test_a_v0005_sqlite_file_with_results_upgrades_with_detector_db_upgrade(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path}/old.db"
    migrate.upgrade(url, "0005")
    _insert_v0005_rows(url)
    assert main(["db", "upgrade", "--store", url]) == 0
    _check_upgraded(url)


def test_a_v0005_postgres_with_results_upgrades_with_detector_db_upgrade(
    postgres_server: str,
) -> None:
    url = pg.create_database(postgres_server)
    migrate.upgrade(url, "0005")
    _insert_v0005_rows(url)
    upgrade = subprocess.run(
        [sys.executable, "-m", "detector.cli", "db", "upgrade", "--store", url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert upgrade.returncode == 0, upgrade.stderr
    _check_upgraded(url)


def test_the_stamp_stays_internal_export_is_the_same_with_or_without_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = [make_result(T0 + n * MIN, ok=n % 3 != 0, instance="b") for n in range(5)]
    exported = []
    for name, written_at in (("history", None), ("late", T0 + 3600.0)):
        url = f"sqlite:///{tmp_path / name}.db"
        store = open_store(url)
        store.add_results(results, written_at)
        store.close()
        out = tmp_path / f"{name}.jsonl"
        window = ["--since", "2026-11-28T09:00:00Z", "--until", "2026-11-28T11:00:00Z"]
        assert main(["export", "--store", url, *window, "--out", str(out)]) == 0
        exported.append(out.read_text())
    capsys.readouterr()
    assert exported[0] == exported[1]
    assert "written_at" not in exported[0] and exported[0].count("\n") == 5
