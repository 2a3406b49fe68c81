"""Deploys and maintenance windows: the calendar half of SqlStore (same engine, same sessions).

Kept apart from sql.py because it shares nothing with incidents and results but the session.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from sqlalchemy import Table
from sqlmodel import Session, col, select

from detector.model import Deploy, Maintenance
from detector.store import tables
from detector.store.base import NotFound
from detector.store.tables import DeployRow, MaintenanceRow


class CalendarMixin:
    """Deploys and maintenance windows, written and read on SqlStore's engine."""

    if TYPE_CHECKING:
        _session: Callable[[str], AbstractContextManager[Session]]
        _audited: Callable[[str], AbstractContextManager[Session]]  # writes the audit record too
        _insert: Callable[[Table], Any]
        _upsert: Callable[..., Any]

    def add_deploy(self, deploy: Deploy) -> None:
        # Recording the same deploy twice (a retried webhook) refreshes it; a bad flag stays.
        bad = tables.deploys.c.bad | self._insert(tables.deploys).excluded.bad
        statement = self._upsert(
            tables.deploys, ("at", "service", "version", "components"), bad=bad
        ).values(
            id=deploy.id,
            at=deploy.at,
            service=deploy.service,
            version=deploy.version,
            components=list(deploy.components),
            bad=deploy.bad,
        )
        with self._audited("add deploy") as session:
            session.exec(statement)

    def flag_deploy_bad(self, deploy_id: str, now: float) -> Deploy:
        with self._audited("flag deploy bad") as session:
            row = session.get(DeployRow, deploy_id, with_for_update=True)
            if row is None:
                raise NotFound(f"no deploy {deploy_id!r}")
            if not row.bad:
                row.bad = True
                row.flagged_at = now
                session.add(row)
            return tables.to_deploy(row)

    def recent_deploys(self, since: float) -> list[Deploy]:
        query = (
            select(DeployRow)
            .where(col(DeployRow.at) >= since)
            .order_by(col(DeployRow.at), col(DeployRow.id))
        )
        with self._session("list deploys") as session:
            return [tables.to_deploy(row) for row in session.exec(query).all()]

    def add_maintenance(self, maintenance: Maintenance) -> Maintenance:
        stored = replace(maintenance, id=maintenance.id or secrets.token_hex(6))
        # Adding a window under an existing id replaces it: that is how a window is edited.
        statement = self._upsert(
            tables.maintenances, ("start_at", "end_at", "components", "title")
        ).values(
            id=stored.id,
            start_at=stored.start,
            end_at=stored.end,
            components=list(stored.components),
            title=stored.title,
            created_at=stored.created_at,  # not in the upsert's update list: an edit keeps it
        )
        with self._audited("add maintenance") as session:
            session.exec(statement)
        return stored

    def cancel_maintenance(self, maintenance_id: str, now: float) -> None:
        with self._audited("cancel maintenance") as session:
            row = session.get(MaintenanceRow, maintenance_id, with_for_update=True)
            if row is None:
                raise NotFound(f"no maintenance {maintenance_id!r}")
            if row.start_at > now:
                session.delete(row)
            elif row.end_at > now:
                row.end_at = now
                session.add(row)

    def list_maintenances(self, *, ending_after: float) -> list[Maintenance]:
        query = (
            select(MaintenanceRow)
            .where(col(MaintenanceRow.end_at) > ending_after)
            .order_by(col(MaintenanceRow.start_at), col(MaintenanceRow.id))
        )
        with self._session("list maintenances") as session:
            return [tables.to_maintenance(row) for row in session.exec(query).all()]
