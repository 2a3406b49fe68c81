"""Recorded history as events, for `detector export` (and so for replay and rule tests).

At one instant maintenance, deploys and bad flags come before results, so a replay sees the
context first. Context that began earlier comes first too: maintenance still running at
`since`, and deploys flagged bad inside the window (a flag names a deploy the replay must
know). A deploy flagged bad later is exported as it was, followed by its flag.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator

from sqlmodel import Session, col, select

from detector.model import DeployFlaggedBad, Event
from detector.store import tables
from detector.store.tables import DeployRow, MaintenanceRow


def context_events(session: Session, since: float, until: float) -> list[Iterable[Event]]:
    """Maintenances, deploys and bad flags for `[since, until)`, each stream sorted."""
    maintenance_rows = session.exec(
        select(MaintenanceRow)
        .where(col(MaintenanceRow.start_at) < until, col(MaintenanceRow.end_at) > since)
        .order_by(col(MaintenanceRow.start_at), col(MaintenanceRow.id))
    ).all()
    flagged_inside = (col(DeployRow.flagged_at) >= since) & (col(DeployRow.flagged_at) < until)
    deploy_rows = session.exec(
        select(DeployRow)
        .where(col(DeployRow.at) < until, (col(DeployRow.at) >= since) | flagged_inside)
        .order_by(col(DeployRow.at), col(DeployRow.id))
    ).all()
    flag_rows = session.exec(
        select(DeployRow)
        .where(flagged_inside)
        .order_by(col(DeployRow.flagged_at), col(DeployRow.id))
    ).all()
    return [
        [tables.to_maintenance(row) for row in maintenance_rows],
        [tables.to_deploy(row, as_recorded=True) for row in deploy_rows],
        [DeployFlaggedBad(at=row.flagged_at or 0.0, id=row.id) for row in flag_rows],
    ]


def merge(context: list[Iterable[Event]], results: Iterable[Event]) -> Iterator[Event]:
    """One time-sorted stream; on a tie the earlier stream (context) comes first."""
    return heapq.merge(*context, results, key=lambda event: event.at)
