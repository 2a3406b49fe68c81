"""The store's tables, as SQLModel classes, and the conversions to and from detector's values.

Times are float epoch seconds (DOUBLE PRECISION): the same numbers the engine uses, simple to
compare and portable across SQLite and PostgreSQL. Enums are stored as their string values
(no database enum types, so migrations never have to alter one). Lists and label maps are
JSON columns.

The tables live in their own registry and MetaData, with a naming convention so the Alembic
revisions in `detector/store/migrations/` name every constraint and index exactly as `create_all`
does; `tests/test_store_schema.py` checks that the two agree.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from sqlalchemy import (
    JSON,
    BigInteger,
    Connection,
    Double,
    Index,
    Integer,
    MetaData,
    Select,
    Table,
    UniqueConstraint,
    false,
    select,
    text,
    true,
)
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from detector.model import (
    Cause,
    ComponentStatus,
    Deploy,
    Incident,
    IncidentStatus,
    IncidentUpdate,
    Maintenance,
    ProbeResult,
)
from detector.store.base import ComponentRecord

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

store_registry = registry(metadata=MetaData(naming_convention=NAMING_CONVENTION))
metadata = store_registry.metadata

# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
_ROW_ID = BigInteger().with_variant(Integer(), "sqlite")


class StoreTable(SQLModel, registry=store_registry):
    """Base of the store's tables: keeps them out of SQLModel's global metadata."""


class ComponentRow(StoreTable, table=True):
    __tablename__ = "components"

    id: str = Field(primary_key=True)  # "group/slug"
    name: str
    group: str
    description: str = ""
    status: str = ComponentStatus.OPERATIONAL.value
    position: int = 0
    updated_at: float = Field(sa_type=Double)


class IncidentRow(StoreTable, table=True):
    __tablename__ = "incidents"
    # The database keeps the invariant whatever the code does: one unresolved incident per
    # (rule, component). Partial index; both backends support the WHERE.
    __table_args__ = (
        Index(
            "uq_incidents_open",
            "rule",
            "component",
            unique=True,
            sqlite_where=text("status != 'resolved'"),
            postgresql_where=text("status != 'resolved'"),
        ),
    )

    id: str = Field(primary_key=True)
    rule: str
    component: str
    title: str
    cause: str
    deploy: str | None = None
    impact: str
    status: str
    component_status: str
    opened_at: float = Field(sa_type=Double, index=True)
    resolved_at: float | None = Field(default=None, sa_type=Double)
    markets: list[str] = Field(default_factory=list, sa_type=JSON)
    started_at: float | None = Field(default=None, sa_type=Double)  # failing_since


class IncidentUpdateRow(StoreTable, table=True):
    """One entry of an incident's timeline. The unique key makes re-applying a decision a no-op."""

    __tablename__ = "incident_updates"
    __table_args__ = (UniqueConstraint("incident_id", "at", "status", "component_status"),)

    id: int | None = Field(default=None, primary_key=True, sa_type=_ROW_ID)
    incident_id: str = Field(foreign_key="incidents.id")
    at: float = Field(sa_type=Double)
    status: str
    component_status: str
    body: str  # public text
    evidence: str = Field(default="", sa_column_kwargs={"server_default": ""})  # on-call only
    public: bool = Field(default=True, sa_column_kwargs={"server_default": true()})


class DeployRow(StoreTable, table=True):
    __tablename__ = "deploys"

    id: str = Field(primary_key=True)
    at: float = Field(sa_type=Double, index=True)
    service: str
    version: str
    components: list[str] = Field(default_factory=list, sa_type=JSON)
    bad: bool = False
    # Set when the deploy was flagged bad after it was recorded; exported as its own event.
    flagged_at: float | None = Field(default=None, sa_type=Double)


class MaintenanceRow(StoreTable, table=True):
    """A window `[start_at, end_at)`; not `start`/`end`, which SQL reserves."""

    __tablename__ = "maintenances"

    id: str = Field(primary_key=True)
    start_at: float = Field(sa_type=Double)
    end_at: float = Field(sa_type=Double, index=True)
    components: list[str] = Field(default_factory=list, sa_type=JSON)
    title: str = ""
    created_at: float | None = Field(default=None, sa_type=Double)  # when it was recorded


class ProbeResultRow(StoreTable, table=True):
    __tablename__ = "probe_results"

    id: int | None = Field(default=None, primary_key=True, sa_type=_ROW_ID)
    at: float = Field(sa_type=Double, index=True)
    probe: str
    kind: str
    component: str
    ok: bool
    latency_s: float | None = Field(default=None, sa_type=Double)
    error: str | None = None
    labels: dict[str, str] = Field(default_factory=dict, sa_type=JSON)
    phases: dict[str, float] = Field(default_factory=dict, sa_type=JSON)
    failure_kind: str = Field(default="fail", sa_column_kwargs={"server_default": "fail"})
    instance: str = Field(default="", sa_column_kwargs={"server_default": ""})
    suspect: bool = Field(default=False, sa_column_kwargs={"server_default": false()})
    # When the writer's flush stamped the batch (its clock): a leader reads peers' results by
    # this, so a batch written late, after an outage, still reaches its windows (`at` is old).
    written_at: float = Field(sa_type=Double, index=True)


class EngineStateRow(StoreTable, table=True):
    """A single row (id 1): the engine's state blob, rewritten by every commit."""

    __tablename__ = "engine_state"

    id: int = Field(default=1, primary_key=True, sa_column_kwargs={"autoincrement": False})
    state: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    updated_at: float = Field(sa_type=Double)


class LeaseRow(StoreTable, table=True):
    """The leader lease of daemons sharing one PostgreSQL (`detector.leader`). `token` grows
    by one at every change of holder: the fencing token leader writes are checked against."""

    __tablename__ = "leases"

    name: str = Field(primary_key=True)
    holder: str
    expires_at: float = Field(sa_type=Double)
    token: int = Field(default=0, sa_type=BigInteger, sa_column_kwargs={"server_default": "0"})


class AuditRow(StoreTable, table=True):
    """One accepted write through the API (`detector.store.audit`)."""

    __tablename__ = "audit"

    id: int | None = Field(default=None, primary_key=True, sa_type=_ROW_ID)
    at: float = Field(sa_type=Double, index=True)
    actor: str = Field(index=True)
    action: str
    target: str = ""
    details: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    outcome: str


def _json_default(value: object) -> object:
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, set | frozenset):
        return sorted(value)
    raise TypeError(f"cannot store a {type(value).__name__} as JSON")


def dumps_json(value: object) -> str:
    """How JSON columns are written. orjson writes NaN and infinity as null: JSON has no
    spelling for them."""
    return orjson.dumps(value, default=_json_default).decode()


def _table(name: str) -> Table:
    return metadata.tables[name]


components = _table("components")
incidents = _table("incidents")
incident_updates = _table("incident_updates")
deploys = _table("deploys")
maintenances = _table("maintenances")
probe_results = _table("probe_results")
engine_state = _table("engine_state")
leases = _table("leases")
audit = _table("audit")

# ----------------------------------------------------------------------- row <-> value


def component_values(record: ComponentRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "name": record.name,
        "group": record.group,
        "description": record.description,
        "status": str(record.status),
        "position": record.position,
        "updated_at": record.updated_at,
    }


def unconfigured_component(
    component_id: str, status: ComponentStatus, now: float, position: int
) -> ComponentRecord:
    """A component the engine reports before config names it: `group/slug` -> name `slug`."""
    group, _, slug = component_id.partition("/")
    return ComponentRecord(
        id=component_id,
        name=slug or component_id,
        group=group if slug else "",
        description="",
        status=status,
        position=position,
        updated_at=now,
    )


def to_component(row: ComponentRow) -> ComponentRecord:
    return ComponentRecord(
        id=row.id,
        name=row.name,
        group=row.group,
        description=row.description,
        status=ComponentStatus(row.status),
        position=row.position,
        updated_at=row.updated_at,
    )


def update_values(incident_id: str, update: IncidentUpdate) -> dict[str, Any]:
    return {
        "incident_id": incident_id,
        "at": update.at,
        "status": str(update.status),
        "component_status": str(update.component_status),
        "body": update.body,
        "evidence": update.evidence,
        "public": update.public,
    }


def to_update(row: IncidentUpdateRow) -> IncidentUpdate:
    return IncidentUpdate(
        at=row.at,
        status=IncidentStatus(row.status),
        component_status=ComponentStatus(row.component_status),
        body=row.body,
        evidence=row.evidence,
        public=row.public,
    )


_CAUSES: dict[str, Cause] = {"deploy": "deploy", "manual": "manual"}


def to_incident(row: IncidentRow, updates: list[IncidentUpdate]) -> Incident:
    cause: Cause = _CAUSES.get(row.cause, "sustained")
    return Incident(
        id=row.id,
        rule=row.rule,
        component=row.component,
        title=row.title,
        cause=cause,
        deploy=row.deploy,
        impact=ComponentStatus(row.impact),
        status=IncidentStatus(row.status),
        component_status=ComponentStatus(row.component_status),
        opened_at=row.opened_at,
        resolved_at=row.resolved_at,
        updates=updates,
        markets=tuple(row.markets),
        started_at=row.started_at,
    )


# What a read returns and `ProbeResult(*row)` builds from, in this order. The hot path writes
# results below SQLAlchemy's parameter processing, as plain tuples in WRITE_COLUMNS order (these
# and `written_at`, internal: never exported) with the JSON already encoded.
RESULT_COLUMNS = (
    "at",
    "probe",
    "kind",
    "component",
    "ok",
    "latency_s",
    "error",
    "labels",
    "phases",
    "failure_kind",
    "instance",
    "suspect",
)
WRITE_COLUMNS = (*RESULT_COLUMNS, "written_at")


def results_query(
    since: float, until: float | None = None, *, inclusive: bool = False
) -> Select[Any]:
    """The results with `at` after `since` (or from it, `inclusive`) and before `until`,
    oldest first, as RESULT_COLUMNS rows."""
    c = probe_results.c
    query = select(*(c[name] for name in RESULT_COLUMNS))
    query = query.where(c.at >= since if inclusive else c.at > since)
    if until is not None:
        query = query.where(c.at < until)
    return query.order_by(c.at, c.id)


def read_engine_state(connection: Connection) -> dict[str, Any] | None:
    """The engine state blob the leader last saved (one row, id 1), or None."""
    c = engine_state.c
    row = connection.execute(select(c.state).where(c.id == 1)).first()
    return dict(row[0]) if row is not None else None


def result_row(result: ProbeResult, written_at: float) -> tuple[Any, ...]:
    return (
        result.at,
        result.probe,
        result.kind,
        result.component,
        result.ok,
        result.latency_s,
        result.error,
        dumps_json(result.labels) if result.labels else "{}",  # most runs: no JSON encoder
        dumps_json(result.phases) if result.phases else "{}",
        result.failure_kind,
        result.instance,
        result.suspect,
        written_at,
    )


def to_deploy(row: DeployRow, *, as_recorded: bool = False) -> Deploy:
    """`as_recorded`: as it was when it happened, for export. A deploy flagged bad later was
    not bad then; its flag is a DeployFlaggedBad event of its own."""
    bad = row.bad and not (as_recorded and row.flagged_at is not None)
    return Deploy(
        at=row.at,
        id=row.id,
        service=row.service,
        version=row.version,
        components=tuple(row.components),
        bad=bad,
    )


def to_maintenance(row: MaintenanceRow) -> Maintenance:
    return Maintenance(
        start=row.start_at,
        end=row.end_at,
        components=tuple(row.components),
        title=row.title,
        id=row.id,
        created_at=row.created_at,
    )
