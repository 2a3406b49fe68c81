"""The audit trail of the write API: who (the token's name) did what, to what, when.

An accepted write leaves one `AuditEntry`. The write API announces it in `pending` (a context
variable, so it follows the request into the worker thread the store runs in) and the store
method that makes the change writes it in the same transaction (`SqlStore._audited`). A write
that changes no store row itself (a reload; a manual update the engine commits later) has
its entry written on its own once it is accepted (`written` is still False then).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Insert
from sqlalchemy import insert as core_insert
from sqlmodel import col, select
from sqlmodel.sql.expression import SelectOfScalar

from detector.store import tables
from detector.store.tables import AuditRow

ACCEPTED = "accepted"


@dataclass(frozen=True, slots=True)
class AuditEntry:
    at: float
    actor: str  # the name of the API token used
    action: str  # e.g. "deploy.record", "incident.open", "maintenance.cancel", "reload"
    target: str  # the id acted on ("" when none)
    details: Mapping[str, Any] = field(default_factory=dict)
    outcome: str = ACCEPTED


@dataclass
class Pending:
    entry: AuditEntry
    written: bool = False


pending: ContextVar[Pending | None] = ContextVar("pending_audit", default=None)


@contextmanager
def auditing(entry: AuditEntry) -> Iterator[Pending]:
    """While inside, the first audited store write also writes `entry`."""
    announced = Pending(entry)
    token = pending.set(announced)
    try:
        yield announced
    finally:
        pending.reset(token)


def insert(entry: AuditEntry) -> Insert:
    values = {
        "at": entry.at,
        "actor": entry.actor,
        "action": entry.action,
        "target": entry.target,
        "details": dict(entry.details),
        "outcome": entry.outcome,
    }
    return core_insert(tables.audit).values(values)


def query(since: float | None, actor: str | None, limit: int) -> SelectOfScalar[AuditRow]:
    """Newest first."""
    statement = select(AuditRow).order_by(col(AuditRow.at).desc(), col(AuditRow.id).desc())
    if since is not None:
        statement = statement.where(col(AuditRow.at) >= since)
    if actor is not None:
        statement = statement.where(col(AuditRow.actor) == actor)
    return statement.limit(limit)


def entry(row: AuditRow) -> AuditEntry:
    return AuditEntry(row.at, row.actor, row.action, row.target, dict(row.details), row.outcome)
