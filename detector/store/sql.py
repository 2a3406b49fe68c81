"""SqlStore: the Store protocol over SQLModel / SQLAlchemy 2, for SQLite and PostgreSQL.

SQLite needs no set-up: `create_schema` makes the tables; PostgreSQL gets them from the
Alembic revisions (`detector db upgrade`). Writes that must not be split (`commit_engine`)
run in one transaction; idempotence comes from primary and unique keys with ON CONFLICT DO NOTHING.
Every database failure surfaces as a one-line StoreError (see `database.store_errors`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from sqlalchemy import Table, bindparam, delete, func, inspect
from sqlalchemy import insert as core_insert
from sqlalchemy import select as core_select
from sqlalchemy import update as core_update
from sqlalchemy.dialects.postgresql import Insert as PostgresInsert
from sqlalchemy.dialects.postgresql import insert as postgres_insert
from sqlalchemy.dialects.sqlite import Insert as SqliteInsert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, col, select

from detector.model import (
    ComponentStatus,
    Decision,
    EpisodeEnded,
    Event,
    Incident,
    IncidentOpened,
    IncidentResolved,
    IncidentStatus,
    IncidentUpdate,
    IncidentUpdated,
    ProbeResult,
    incident_fields,
    note_time,
)
from detector.store import audit, history, migrate, tables
from detector.store.audit import AuditEntry
from detector.store.base import ComponentRecord, NotFound, Store, StoreError
from detector.store.calendar import CalendarMixin
from detector.store.database import (
    DEFAULT_URL,
    build_engine,
    insert_results,
    safe_url,
    store_errors,
)
from detector.store.lease import Fence, LeaseStore, check_fence
from detector.store.outbox import OutboxMixin
from detector.store.tables import (
    ComponentRow,
    IncidentRow,
    IncidentUpdateRow,
)

_EXPORT_BATCH = 5000  # results fetched per round trip while exporting


class SqlStore(CalendarMixin, OutboxMixin, LeaseStore):
    """The Store protocol on one SQLAlchemy engine. Safe to share between threads."""

    def __init__(self, url: str = DEFAULT_URL) -> None:
        self.url = url
        self.engine = build_engine(url)
        self.dialect = self.engine.dialect.name

    def __repr__(self) -> str:
        return f"SqlStore({safe_url(self.url)!r})"

    @contextmanager
    def _session(self, action: str) -> Iterator[Session]:
        """One transaction: committed on success, rolled back on any failure."""
        with store_errors(action, self.url), Session(self.engine) as session, session.begin():
            yield session

    @contextmanager
    def _audited(self, action: str) -> Iterator[Session]:
        """A session that also writes the write API's pending audit entry, if any: the
        record of a change commits or rolls back with the change."""
        announced = audit.pending.get()
        with self._session(action) as session:
            yield session
            if announced is not None and not announced.written:
                session.exec(audit.insert(announced.entry))
            else:
                announced = None
        if announced is not None:
            announced.written = True

    def _insert(self, table: Table) -> SqliteInsert | PostgresInsert:
        return postgres_insert(table) if self.dialect == "postgresql" else sqlite_insert(table)

    def _upsert(
        self, table: Table, refreshed: Sequence[str], **kept: Any
    ) -> SqliteInsert | PostgresInsert:
        """INSERT ... ON CONFLICT (id) DO UPDATE: the `refreshed` columns take the new row's
        values; `kept` gives other columns an expression of their own (e.g. keep a flag)."""
        statement = self._insert(table)
        return statement.on_conflict_do_update(
            index_elements=[table.c[table.primary_key.columns.keys()[0]]],
            set_={name: statement.excluded[name] for name in refreshed} | kept,
        )

    # --- schema and lifecycle

    def create_schema(self) -> None:
        """SQLite: create a new file's tables (stamped at the newest migration) or bring an
        older file up to date. PostgreSQL: check the schema is current; `detector db
        upgrade` makes it so (several daemons must not race to alter shared tables)."""
        with store_errors("open database", self.url), self.engine.begin() as connection:
            existing = set(inspect(connection).get_table_names())
            if self.dialect == "sqlite":
                if existing & set(tables.metadata.tables):
                    migrate.upgrade_connection(connection)
                else:
                    tables.metadata.create_all(connection)
                    migrate.stamp_connection(connection)
                return
            migrate.check_current(connection, existing, safe_url(self.url))

    def close(self) -> None:
        self.engine.dispose()

    # --- components

    def sync_components(self, components: Sequence[ComponentRecord]) -> None:
        if not components:
            return
        statement = self._upsert(tables.components, ("name", "group", "description", "position"))
        rows = [tables.component_values(record) for record in components]
        with self._session("sync components") as session:
            session.exec(statement, params=rows)

    def list_components(self) -> list[ComponentRecord]:
        with self._session("list components") as session:
            rows = session.exec(
                select(ComponentRow).order_by(col(ComponentRow.position), col(ComponentRow.id))
            ).all()
            return [tables.to_component(row) for row in rows]

    def _set_component_statuses(
        self, session: Session, statuses: Mapping[str, ComponentStatus], now: float
    ) -> None:
        stored = {
            row.id: (row.status, row.position) for row in session.exec(select(ComponentRow)).all()
        }
        changed = [
            {"target": component, "new_status": str(status)}
            for component, status in statuses.items()
            if component in stored and stored[component][0] != status
        ]
        if changed:
            set_status = (
                core_update(tables.components)
                .where(tables.components.c.id == bindparam("target"))
                .values(status=bindparam("new_status"), updated_at=now)
            )
            session.exec(set_status, params=changed)
        # A component the config does not name yet: shown last, named after its slug.
        last = max((position for _, position in stored.values()), default=-1)
        new = [component for component in statuses if component not in stored]
        unknown = [
            tables.component_values(
                tables.unconfigured_component(component, statuses[component], now, last + n)
            )
            for n, component in enumerate(new, start=1)
        ]
        if unknown:
            session.exec(self._insert(tables.components).on_conflict_do_nothing(), params=unknown)

    # --- the engine's writes

    def commit_engine(
        self,
        decisions: Sequence[Decision],
        engine_state: Mapping[str, Any],
        component_statuses: Mapping[str, ComponentStatus],
        now: float,
        fence: Fence | None = None,
    ) -> None:
        with self._audited("commit engine decisions") as session:
            if fence is not None:  # checked first, in this transaction: see store.lease
                check_fence(session.connection(), fence)
            for decision in decisions:
                if isinstance(decision, IncidentOpened):
                    self._open_incident(session, decision.incident)
                elif isinstance(decision, IncidentUpdated | IncidentResolved):
                    self._apply_update(session, decision.incident, decision.update)
                elif not isinstance(decision, EpisodeEnded):
                    raise StoreError(f"unknown decision {type(decision).__name__}")
            statement = self._upsert(tables.engine_state, ("state", "updated_at"))
            session.exec(statement.values(id=1, state=dict(engine_state), updated_at=now))
            self._record_outbox(session, decisions, component_statuses, now)  # the same transaction
            self._set_component_statuses(session, component_statuses, now)

    def _open_incident(self, session: Session, incident: Incident) -> None:
        statement = self._insert(tables.incidents).values(incident_fields(incident))
        session.exec(statement.on_conflict_do_nothing())
        # Absent now: uq_incidents_open refused a 2nd open one on (rule, component); skip it.
        if session.get(IncidentRow, incident.id) is not None:
            self._insert_updates(session, incident.id, incident.updates)

    def _insert_updates(
        self, session: Session, incident_id: str, updates: Iterable[IncidentUpdate]
    ) -> None:
        rows = [tables.update_values(incident_id, update) for update in updates]
        if rows:
            statement = self._insert(tables.incident_updates).on_conflict_do_nothing()
            session.exec(statement, params=rows)

    def _apply_update(self, session: Session, incident: Incident, update: IncidentUpdate) -> None:
        if session.get(IncidentRow, incident.id) is None:
            return  # an open the unique index refused (see _open_incident)
        self._insert_updates(session, incident.id, [update])
        resolved = update.status == IncidentStatus.RESOLVED
        resolved_at = (incident.resolved_at or update.at) if resolved else None
        statement = (
            core_update(tables.incidents)
            .where(tables.incidents.c.id == incident.id)
            .values(
                title=incident.title,
                impact=str(incident.impact),
                status=str(update.status),
                component_status=str(update.component_status),
                resolved_at=resolved_at,
                markets=list(incident.markets),
                started_at=incident.started_at,
            )
        )
        session.exec(statement)

    def load_engine_state(self) -> dict[str, Any] | None:
        with store_errors("load engine state", self.url), self.engine.connect() as connection:
            return tables.read_engine_state(connection)

    # --- incidents

    def _read_incidents(self, session: Session, rows: Sequence[IncidentRow]) -> list[Incident]:
        updates: dict[str, list[IncidentUpdate]] = {row.id: [] for row in rows}
        if updates:
            query = (
                select(IncidentUpdateRow)
                .where(col(IncidentUpdateRow.incident_id).in_(list(updates)))
                .order_by(col(IncidentUpdateRow.at), col(IncidentUpdateRow.id))
            )
            for update in session.exec(query).all():
                updates[update.incident_id].append(tables.to_update(update))
        return [tables.to_incident(row, updates[row.id]) for row in rows]

    def list_incidents(
        self,
        *,
        unresolved_only: bool = False,
        limit: int = 50,
        active_since: float | None = None,
        opened_before: float | None = None,
    ) -> list[Incident]:
        query = select(IncidentRow)
        if unresolved_only:
            query = query.where(col(IncidentRow.status) != IncidentStatus.RESOLVED.value)
        if active_since is not None:
            resolved = col(IncidentRow.resolved_at)
            query = query.where(resolved.is_(None) | (resolved >= active_since))
        if opened_before is not None:
            query = query.where(col(IncidentRow.opened_at) < opened_before)
        query = query.order_by(col(IncidentRow.opened_at).desc(), col(IncidentRow.id).desc())
        with self._session("list incidents") as session:
            return self._read_incidents(session, session.exec(query.limit(limit)).all())

    def get_incident(self, incident_id: str) -> Incident:
        with self._session("read incident") as session:
            row = session.get(IncidentRow, incident_id)
            if row is None:
                raise NotFound(f"no incident {incident_id!r}")
            return self._read_incidents(session, [row])[0]

    def add_incident_update(
        self, incident_id: str, status: IncidentStatus, body: str, now: float
    ) -> IncidentUpdate:
        with self._audited("add incident update") as session:
            row = session.get(IncidentRow, incident_id, with_for_update=True)
            if row is None:
                raise NotFound(f"no incident {incident_id!r}")
            already_resolved = row.status == IncidentStatus.RESOLVED.value
            if already_resolved and status != IncidentStatus.RESOLVED:
                raise StoreError(f"incident {incident_id!r} is resolved; it cannot be {status}")
            c = tables.incident_updates.c
            latest = core_select(func.max(c.at)).where(c.incident_id == incident_id)
            at = note_time(session.exec(latest).scalar(), now)  # type: ignore[call-overload]
            if status == IncidentStatus.RESOLVED:
                component_status = ComponentStatus.OPERATIONAL
                row.resolved_at = row.resolved_at if already_resolved else at
            else:
                component_status = ComponentStatus(row.component_status)
            update = IncidentUpdate(
                at=at, status=status, component_status=component_status, body=body
            )
            session.exec(
                core_insert(tables.incident_updates).values(tables.update_values(row.id, update))
            )
            row.status = str(status)
            row.component_status = str(component_status)
            session.add(row)
            return update

    # --- probe results

    def add_results(self, results: Sequence[ProbeResult], written_at: float | None = None) -> None:
        if not results:
            return
        row = tables.result_row
        if written_at is None:  # history (imports, tests): as if written when it happened
            rows = [row(result, result.at) for result in results]
        else:
            rows = [row(result, written_at) for result in results]
        with store_errors("add probe results", self.url), self.engine.begin() as connection:
            insert_results(connection, rows)

    def results_since(self, since: float) -> list[ProbeResult]:
        return list(self._results(since, None, inclusive=False))

    def _results(
        self, since: float, until: float | None, *, inclusive: bool
    ) -> Iterator[ProbeResult]:
        query = tables.results_query(since, until, inclusive=inclusive)
        query = query.execution_options(yield_per=_EXPORT_BATCH)
        with store_errors("read probe results", self.url), self.engine.connect() as connection:
            for row in connection.execute(query):
                yield ProbeResult(*row)

    def prune_results(self, before: float) -> int:
        statement = delete(tables.probe_results).where(tables.probe_results.c.at < before)
        with self._session("prune probe results") as session:
            return int(session.exec(statement).rowcount)

    # --- the audit trail

    def add_audit(self, entry: AuditEntry) -> None:
        with self._session("add audit record") as session:
            session.exec(audit.insert(entry))

    def list_audit(
        self, *, since: float | None = None, actor: str | None = None, limit: int = 100
    ) -> list[AuditEntry]:
        with self._session("list audit records") as session:
            return [audit.entry(row) for row in session.exec(audit.query(since, actor, limit))]

    # --- history

    def export_events(self, since: float, until: float) -> Iterator[Event]:
        """Events with their time in `[since, until)`; see `detector.store.history`."""
        with self._session("export events") as session:
            context = history.context_events(session, since, until)
        return history.merge(context, self._results(since, until, inclusive=True))


if TYPE_CHECKING:

    def _implements_store(store: SqlStore) -> Store:
        return store  # mypy checks SqlStore against the protocol here
