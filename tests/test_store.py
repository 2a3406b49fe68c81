"""One contract suite for the Store, run against every backend (SQLite file, PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from factories import MAJOR, T0, make_component, make_incident, make_result
from sqlalchemy import event, func, select
from sqlalchemy.exc import OperationalError

from detector.model import (
    ComponentStatus,
    Decision,
    Deploy,
    DeployFlaggedBad,
    Episode,
    EpisodeEnded,
    IncidentOpened,
    IncidentResolved,
    IncidentStatus,
    IncidentUpdate,
    IncidentUpdated,
    Maintenance,
)
from detector.store import (
    ComponentRecord,
    NotFound,
    SqlStore,
    Store,
    StoreError,
    open_store,
    tables,
)
from detector.store.database import ROWS_PER_INSERT as CHUNK

PARTIAL = ComponentStatus.PARTIAL_OUTAGE
OPERATIONAL = ComponentStatus.OPERATIONAL
INVESTIGATING = IncidentStatus.INVESTIGATING
MONITORING = IncidentStatus.MONITORING
RESOLVED = IncidentStatus.RESOLVED


@pytest.fixture
def store(store_url: str) -> Iterator[SqlStore]:
    opened = open_store(store_url)
    yield opened
    opened.close()


def count_rows(store: SqlStore, table: Any) -> int:
    with store.engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(table)).scalar_one())


# ------------------------------------------------------------------ lifecycle


def test_sql_store_satisfies_the_protocol(store: SqlStore) -> None:
    typed: Store = store
    assert typed.list_components() == []


def test_components_sync_keeps_stored_statuses(store: SqlStore) -> None:
    store.sync_components([make_component("carriers/dhl", 1), make_component("carriers/ups", 0)])
    assert [c.id for c in store.list_components()] == ["carriers/ups", "carriers/dhl"]

    store.commit_engine([], {}, {"carriers/dhl": MAJOR, "carriers/ups": OPERATIONAL}, T0 + 60)
    store.sync_components(
        [make_component("carriers/dhl", 1, name="DHL Parcel", description="DHL Parcel labels")]
    )

    dhl, ups = store.list_components()[1], store.list_components()[0]
    assert (dhl.name, dhl.status, dhl.updated_at) == ("DHL Parcel", MAJOR, T0 + 60)
    assert (ups.status, ups.updated_at) == (OPERATIONAL, T0)  # unchanged status, not touched
    assert dhl.description == "DHL Parcel labels"


def test_engine_statuses_insert_unknown_components(store: SqlStore) -> None:
    store.sync_components([make_component("carriers/dhl", 0)])
    store.commit_engine([], {}, {"integrations/shopify": PARTIAL}, T0)
    shopify = store.list_components()[-1]
    assert shopify == ComponentRecord(
        id="integrations/shopify",
        name="shopify",
        group="integrations",
        description="",
        status=PARTIAL,
        position=1,
        updated_at=T0,
    )


def test_incident_open_update_resolve_reads_back_equal(store: SqlStore) -> None:
    incident = make_incident()
    store.commit_engine([IncidentOpened(incident)], {"n": 1}, {"carriers/dhl": MAJOR}, T0)
    assert store.get_incident("inc-1") == incident

    steps = [
        IncidentUpdate(T0 + 60, INVESTIGATING, PARTIAL, "error_ratio (0.4) >= 0.3"),
        IncidentUpdate(T0 + 120, MONITORING, PARTIAL, "recovering"),
        IncidentUpdate(T0 + 720, RESOLVED, OPERATIONAL, "stable for 10m"),
    ]
    for update in steps:
        incident.updates.append(update)
        incident.status = update.status
        incident.component_status = update.component_status
        if update.status is RESOLVED:
            incident.resolved_at = update.at
            decision: IncidentUpdated | IncidentResolved = IncidentResolved(incident, update)
        else:
            decision = IncidentUpdated(incident, update)
        store.commit_engine([decision], {}, {"carriers/dhl": update.component_status}, update.at)
        assert store.get_incident("inc-1") == incident

    assert [u.status for u in store.get_incident("inc-1").updates] == [
        INVESTIGATING,
        INVESTIGATING,
        MONITORING,
        RESOLVED,
    ]
    assert store.list_incidents(unresolved_only=True) == []
    assert store.list_components()[0].status == OPERATIONAL


def test_reapplying_decisions_writes_nothing_twice(store: SqlStore) -> None:
    incident = make_incident()
    update = IncidentUpdate(T0 + 60, INVESTIGATING, PARTIAL, "error_ratio (0.4) >= 0.3")
    # The engine mutates its Incident, so the opening decision already carries the update.
    incident.updates.append(update)
    incident.component_status = PARTIAL
    ended = EpisodeEnded(Episode("carrier-label-creation", "carriers/dhl", T0, None, "incident"))
    decisions: list[Decision] = [IncidentOpened(incident), IncidentUpdated(incident, update), ended]

    for _ in range(3):
        store.commit_engine(decisions, {"n": 1}, {"carriers/dhl": PARTIAL}, T0 + 60)

    assert store.list_incidents() == [incident]
    assert count_rows(store, tables.incident_updates) == 2
    assert count_rows(store, tables.incidents) == 1


def test_incidents_list_newest_first_with_limit(store: SqlStore) -> None:
    opened = [
        make_incident(f"inc-{n}", at=T0 + n * 60, component=f"carriers/c{n}") for n in range(4)
    ]
    opened[1].status = RESOLVED
    opened[1].resolved_at = T0 + 100
    store.commit_engine([IncidentOpened(i) for i in opened], {}, {}, T0 + 300)
    assert [i.id for i in store.list_incidents(limit=3)] == ["inc-3", "inc-2", "inc-1"]
    assert [i.id for i in store.list_incidents(unresolved_only=True)] == ["inc-3", "inc-2", "inc-0"]
    with pytest.raises(NotFound):
        store.get_incident("nope")
    # the status page's history: incidents open at some time in [since, until)
    assert [i.id for i in store.list_incidents(active_since=T0 + 150)] == [
        "inc-3",
        "inc-2",
        "inc-0",
    ]
    assert [i.id for i in store.list_incidents(active_since=T0 + 100)] == [
        "inc-3", "inc-2", "inc-1", "inc-0",
    ]  # fmt: skip
    span = store.list_incidents(active_since=T0 + 100, opened_before=T0 + 120)
    assert [i.id for i in span] == ["inc-1", "inc-0"]
    assert [i.id for i in store.list_incidents(opened_before=T0 + 60, limit=1)] == ["inc-0"]


def test_engine_state_roundtrip(store: SqlStore) -> None:
    assert store.load_engine_state() is None
    state = {"version": 1, "series": {"rule|carriers/dhl": {"failing_since": T0 + 0.125}}}
    store.commit_engine([], state, {}, T0)
    assert store.load_engine_state() == state
    store.commit_engine([], {"version": 2}, {}, T0 + 1)
    assert store.load_engine_state() == {"version": 2}


def test_failed_commit_writes_nothing(store: SqlStore) -> None:
    store.sync_components([make_component("carriers/dhl", 0)])
    store.commit_engine([], {"generation": 1}, {"carriers/dhl": OPERATIONAL}, T0)

    opened = make_incident("inc-new")
    broken = make_incident("inc-broken", component="carriers/ups", title=None)  # NOT NULL
    with pytest.raises(StoreError, match="commit engine decisions failed"):
        store.commit_engine(
            [IncidentOpened(opened), IncidentOpened(broken)],
            {"generation": 2},
            {"carriers/dhl": MAJOR},
            T0 + 60,
        )

    with pytest.raises(NotFound):
        store.get_incident("inc-new")
    assert count_rows(store, tables.incident_updates) == 0
    assert store.load_engine_state() == {"generation": 1}
    assert store.list_components()[0].status == OPERATIONAL


def test_database_failure_midway_rolls_back(store: SqlStore) -> None:
    store.commit_engine([], {"generation": 1}, {}, T0)

    def fail_on_state_write(_c: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if "engine_state" in statement and "INSERT" in statement.upper():
            raise OperationalError(statement, {}, Exception("disk I/O error"))

    event.listen(store.engine, "before_cursor_execute", fail_on_state_write)
    try:
        with pytest.raises(StoreError, match="disk I/O error"):
            store.commit_engine([IncidentOpened(make_incident())], {"generation": 2}, {}, T0)
    finally:
        event.remove(store.engine, "before_cursor_execute", fail_on_state_write)

    assert store.list_incidents() == []
    assert store.load_engine_state() == {"generation": 1}
    store.add_results([make_result(T0)])  # the pool recovered


# ------------------------------------------------------------------ results


def test_results_batches_since_and_prune(store: SqlStore) -> None:
    batch = [make_result(T0 + 30, ok=False), make_result(T0 + 10), make_result(T0 + 20, labels={})]
    store.add_results(batch)
    sparse = make_result(T0 + 40, latency_s=None, phases={})
    store.add_results([sparse])
    store.add_results([])

    assert store.results_since(T0 + 10) == [batch[2], batch[0], sparse]
    assert [r.at for r in store.results_since(0)] == [T0 + 10, T0 + 20, T0 + 30, T0 + 40]
    assert store.prune_results(before=T0 + 30) == 2
    assert [r.at for r in store.results_since(0)] == [T0 + 30, T0 + 40]


def test_results_keep_failure_kind_instance_and_suspect(store: SqlStore) -> None:
    stamped = [
        make_result(T0, ok=False, failure_kind="error", instance="ams-1", suspect=True),
        make_result(T0 + 1, ok=False, failure_kind="fail", instance="fra-2"),
        make_result(T0 + 2, instance="fra-2"),
    ]
    store.add_results(stamped)
    assert store.results_since(0) == stamped
    assert list(store.export_events(T0, T0 + 60)) == stamped


def test_incidents_keep_evidence_public_flag_and_started_at(store: SqlStore) -> None:
    first = IncidentUpdate(
        T0, INVESTIGATING, MAJOR, "We are investigating.", "error_ratio (1) >= 0.9"
    )
    incident = make_incident(updates=[first], started_at=T0 - 1800)
    store.commit_engine([IncidentOpened(incident)], {}, {"carriers/dhl": MAJOR}, T0)
    quiet = IncidentUpdate(T0 + 60, INVESTIGATING, PARTIAL, "", "error_ratio (0.4) >= 0.3", False)
    incident.updates.append(quiet)
    incident.component_status = PARTIAL
    store.commit_engine([IncidentUpdated(incident, quiet)], {}, {}, T0 + 60)
    read = store.get_incident("inc-1")
    assert read == incident
    assert read.started_at == T0 - 1800
    assert [(u.evidence, u.public) for u in read.updates] == [
        ("error_ratio (1) >= 0.9", True),
        ("error_ratio (0.4) >= 0.3", False),
    ]


def test_a_bad_result_fails_the_whole_batch(store: SqlStore) -> None:
    store.add_results([make_result(T0)])
    broken = make_result(T0 + 2, probe=None)  # NOT NULL
    with pytest.raises(StoreError, match="add probe results failed"):
        store.add_results([make_result(T0 + 1), broken, make_result(T0 + 3)])
    assert [r.at for r in store.results_since(0)] == [T0]
    store.add_results([make_result(T0 + 4)])  # the connection is usable again
    assert len(store.results_since(0)) == 2


def test_ten_thousand_results_in_one_batch(store: SqlStore) -> None:
    batch = [make_result(T0 + n * 0.01, ok=n % 7 != 0) for n in range(10_000)]
    store.add_results(batch)
    assert store.results_since(0) == batch


@pytest.mark.parametrize("size", [1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 2 * CHUNK + 5])
def test_batches_around_the_insert_chunk_keep_every_row_in_order(
    store: SqlStore, size: int
) -> None:
    """SQLite writes whole chunks as one multi-row INSERT and the rest row by row."""
    batch = [
        make_result(T0 + n, ok=n % 3 != 0, labels={"n": str(n)}, instance=f"i{n}")
        for n in range(size)
    ]
    store.add_results(batch)
    assert store.results_since(0) == batch


def test_a_bad_row_in_a_full_chunk_fails_the_whole_batch(store: SqlStore) -> None:
    batch = [make_result(T0 + n) for n in range(CHUNK + 3)]
    batch[CHUNK // 2] = make_result(T0, probe=None)  # NOT NULL, inside the first chunk
    with pytest.raises(StoreError, match="add probe results failed"):
        store.add_results(batch)
    batch[CHUNK // 2] = make_result(T0)
    batch[-1] = make_result(T0, component=None)  # and in the row-by-row rest
    with pytest.raises(StoreError, match="add probe results failed"):
        store.add_results(batch)
    assert store.results_since(0) == []


# ------------------------------------------------------------------ deploys and maintenance


def test_deploys_and_bad_flag(store: SqlStore) -> None:
    deploy = Deploy(T0, "d-17", "label-api", "2026.11.28-1", ("carriers/dhl",))
    store.add_deploy(deploy)
    store.add_deploy(Deploy(T0 - 3600, "d-16", "label-api", "2026.11.27-3", ()))
    assert store.recent_deploys(T0 - 60) == [deploy]

    flagged = store.flag_deploy_bad("d-17", T0 + 540)
    assert flagged == Deploy(T0, "d-17", "label-api", "2026.11.28-1", ("carriers/dhl",), bad=True)
    assert store.flag_deploy_bad("d-17", T0 + 999) == flagged
    store.add_deploy(deploy)  # a retried webhook does not clear the flag
    assert store.recent_deploys(T0) == [flagged]
    with pytest.raises(NotFound):
        store.flag_deploy_bad("d-99", T0)


def test_a_maintenance_keeps_when_it_was_recorded_across_edits(store: SqlStore) -> None:
    planned = Maintenance(T0 + 86_400, T0 + 90_000, ("carriers/dhl",), "DHL", created_at=T0)
    stored = store.add_maintenance(planned)
    assert store.list_maintenances(ending_after=T0)[0].created_at == T0
    edited = Maintenance(T0 + 86_400, T0 + 93_600, ("carriers/dhl",), "DHL", stored.id, T0 + 60)
    store.add_maintenance(edited)
    [kept] = store.list_maintenances(ending_after=T0)
    assert (kept.end, kept.created_at) == (T0 + 93_600, T0)


def test_maintenances_add_list_cancel(store: SqlStore) -> None:
    upcoming = store.add_maintenance(Maintenance(T0 + 3600, T0 + 7200, ("carriers/dhl",), "DHL"))
    active = store.add_maintenance(Maintenance(T0 - 60, T0 + 600, ("carriers/ups",), id="m-ups"))
    past = store.add_maintenance(Maintenance(T0 - 7200, T0 - 3600, ("carriers/gls",), id="m-gls"))
    assert upcoming.id and active.id == "m-ups"
    assert store.list_maintenances(ending_after=T0) == [active, upcoming]

    store.cancel_maintenance(upcoming.id, T0)
    store.cancel_maintenance("m-ups", T0)
    store.cancel_maintenance("m-gls", T0)  # already over: its end stays where it was
    assert store.list_maintenances(ending_after=T0 - 7200) == [
        past,
        Maintenance(T0 - 60, T0, ("carriers/ups",), "", "m-ups"),
    ]
    with pytest.raises(NotFound):
        store.cancel_maintenance(upcoming.id, T0)


def test_manual_incident_updates(store: SqlStore) -> None:
    store.commit_engine([IncidentOpened(make_incident())], {}, {}, T0)

    identified = store.add_incident_update(
        "inc-1", IncidentStatus.IDENTIFIED, "DHL API down", T0 + 5
    )
    assert identified == IncidentUpdate(T0 + 5, IncidentStatus.IDENTIFIED, MAJOR, "DHL API down")
    resolved = store.add_incident_update("inc-1", RESOLVED, "fixed by DHL", T0 + 90)
    assert resolved.component_status == OPERATIONAL

    incident = store.get_incident("inc-1")
    assert (incident.status, incident.resolved_at, incident.component_status) == (
        RESOLVED,
        T0 + 90,
        OPERATIONAL,
    )
    assert incident.updates[1:] == [identified, resolved]
    with pytest.raises(StoreError, match="resolved"):
        store.add_incident_update("inc-1", MONITORING, "late", T0 + 99)
    with pytest.raises(NotFound):
        store.add_incident_update("nope", MONITORING, "x", T0)


def test_two_notes_in_the_same_instant_are_both_kept_in_order(store: SqlStore) -> None:
    """The unique key that makes a re-applied decision a no-op must not refuse a second note."""
    store.commit_engine([IncidentOpened(make_incident())], {}, {}, T0)
    first = store.add_incident_update("inc-1", MONITORING, "fix deployed", T0 + 5)
    second = store.add_incident_update("inc-1", MONITORING, "watching the queue", T0 + 5)
    assert (first.at, second.at) == (T0 + 5, T0 + 5.001)  # a millisecond later: both shown
    assert store.get_incident("inc-1").updates[1:] == [first, second]


# ------------------------------------------------------------------ export


def test_export_events_sorted_and_typed(store: SqlStore) -> None:
    store.add_results([make_result(T0 + 120, ok=False), make_result(T0), make_result(T0 + 3600)])
    store.add_deploy(Deploy(T0, "d-17", "label-api", "v1", ("carriers/dhl",)))
    store.add_deploy(Deploy(T0 + 30, "d-18", "label-api", "v2", (), bad=True))
    store.flag_deploy_bad("d-17", T0 + 540)
    window = store.add_maintenance(Maintenance(T0 + 60, T0 + 600, ("carriers/ups",), "UPS", "m1"))
    running = store.add_maintenance(
        Maintenance(T0 - 600, T0 + 600, ("carriers/gls",), "before", "m0")
    )
    store.add_maintenance(Maintenance(T0 - 900, T0 - 300, ("carriers/gls",), "over", "m-1"))

    events = list(store.export_events(T0, T0 + 3600))
    assert events == [
        running,  # still running at `since`: a replay must know the component is blue
        Deploy(T0, "d-17", "label-api", "v1", ("carriers/dhl",), bad=False),
        make_result(T0),
        Deploy(T0 + 30, "d-18", "label-api", "v2", (), bad=True),
        window,
        make_result(T0 + 120, ok=False),
        DeployFlaggedBad(T0 + 540, "d-17"),
    ]
    assert list(store.export_events(T0 + 3600, T0 + 3601)) == [make_result(T0 + 3600)]
    # A deploy flagged inside the window comes with it, even though it was made before.
    flagged = store.export_events(T0 + 500, T0 + 550)
    assert [e for e in flagged if not isinstance(e, Maintenance)] == [
        Deploy(T0, "d-17", "label-api", "v1", ("carriers/dhl",), bad=False),
        DeployFlaggedBad(T0 + 540, "d-17"),
    ]
