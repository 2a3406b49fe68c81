"""The notification outbox: events written in the transaction of the change they describe,
and one delivery per (event, channel) that the dispatcher works through.

An outbox row is written by `commit_engine` (incident and component changes) or by the
dispatcher (`episode.started`, keyed so it is written once). The dispatcher fans each row out
to the channels whose filter matches, as delivery rows with a random id that stays the same
on every retry; a delivery ends `delivered` or `dead` (the dead-letter record, with its last
error, that `detector notifications retry` brings back).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import JSON, BigInteger, Double, Index, Integer, Table, UniqueConstraint, func
from sqlalchemy import delete as core_delete
from sqlalchemy import select as core_select
from sqlalchemy import update as core_update
from sqlmodel import Field, Session, col, select

from detector.model import ComponentStatus, Decision
from detector.notify.payload import OutboxEvent, component_event, incident_events
from detector.store.tables import ComponentRow, StoreTable

DeliveryState = Literal["pending", "delivered", "dead"]
_ROW_ID = BigInteger().with_variant(Integer(), "sqlite")


class OutboxRow(StoreTable, table=True):
    __tablename__ = "outbox"

    id: int | None = Field(default=None, primary_key=True, sa_type=_ROW_ID)
    event: str
    subject: str  # deliveries for one subject (an incident) go out in id order
    at: float = Field(sa_type=Double)
    dedup: str = Field(unique=True)
    facts: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    body: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    channel: str = ""  # "" = every matching channel
    fanned: bool = Field(default=False, index=True)


class DeliveryRow(StoreTable, table=True):
    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("outbox_id", "channel"),
        Index("ix_deliveries_channel_state", "channel", "state"),
    )

    id: str = Field(primary_key=True)  # the delivery id: the same on every retry
    outbox_id: int = Field(sa_type=_ROW_ID)
    channel: str
    subject: str
    state: str = "pending"
    attempts: int = 0
    next_at: float = Field(sa_type=Double)
    last_error: str = ""
    updated_at: float = Field(sa_type=Double)


class ChannelRefRow(StoreTable, table=True):
    """A channel's own id for a detector thing (a hosted Statuspage incident id)."""

    __tablename__ = "channel_refs"

    channel: str = Field(primary_key=True)
    key: str = Field(primary_key=True)
    ref: str


class SubscriberRow(StoreTable, table=True):
    """An email address's unsubscribe token; `unsubscribed_at` set once it used it."""

    __tablename__ = "subscribers"
    __table_args__ = (UniqueConstraint("channel", "address"),)

    token: str = Field(primary_key=True)
    channel: str
    address: str
    unsubscribed_at: float | None = Field(default=None, sa_type=Double)


@dataclass(frozen=True, slots=True)
class Delivery:
    id: str
    outbox_id: int
    channel: str
    subject: str
    event: str
    at: float
    facts: Mapping[str, Any]
    body: Mapping[str, Any]
    state: str
    attempts: int
    next_at: float
    last_error: str


# What a fan-out asks of a channel: does this event (its name, facts, target) go to it?
Router = Callable[[str, Mapping[str, Any], str], Sequence[str]]


class OutboxMixin:
    """The outbox half of SqlStore (same engine, same transactions)."""

    if TYPE_CHECKING:
        _session: Callable[[str], AbstractContextManager[Session]]
        _insert: Callable[[Table], Any]

    # --- written with the change
    def _record_outbox(
        self,
        session: Session,
        decisions: Sequence[Decision],
        statuses: Mapping[str, ComponentStatus],
        now: float,
    ) -> None:
        """Called inside commit_engine before the statuses are written, so it sees the old."""
        events = incident_events(decisions)
        stored = {row.id: row for row in session.exec(select(ComponentRow)).all()}
        for component, status in statuses.items():
            row = stored.get(component)
            old = ComponentStatus(row.status) if row else ComponentStatus.OPERATIONAL
            if old != status:
                name = row.name if row else component
                events.append(component_event(component, name, old, status, now))
        self._write_events(session, events)

    def _write_events(self, session: Session, events: Iterable[OutboxEvent]) -> None:
        rows = [
            {
                "event": e.event,
                "subject": e.subject,
                "at": e.at,
                "dedup": e.dedup,
                "facts": dict(e.facts),
                "body": dict(e.body),
                "channel": e.channel,
                "fanned": False,
            }
            for e in events
        ]
        if rows:
            outbox = OutboxRow.__table__  # type: ignore[attr-defined]
            session.exec(self._insert(outbox).on_conflict_do_nothing(), params=rows)

    def add_outbox_events(self, events: Sequence[OutboxEvent]) -> None:
        """Events that are no store change of their own (episode.started); written once."""
        with self._session("write outbox") as session:
            self._write_events(session, events)

    # --- the dispatcher's side
    def fan_out(self, route: Router, now: float, limit: int = 1000) -> int:
        """Deliveries for new outbox rows, one per matching channel; returns rows fanned."""
        with self._session("fan out notifications") as session:
            query = (
                select(OutboxRow)
                .where(col(OutboxRow.fanned).is_(False))
                .order_by(col(OutboxRow.id))
                .limit(limit)
            )
            rows = session.exec(query).all()
            deliveries = [
                {
                    "id": secrets.token_hex(12),
                    "outbox_id": row.id,
                    "channel": channel,
                    "subject": row.subject,
                    "state": "pending",
                    "attempts": 0,
                    "next_at": now,
                    "last_error": "",
                    "updated_at": now,
                }
                for row in rows
                for channel in route(row.event, row.facts, row.channel)
            ]
            if deliveries:
                table = DeliveryRow.__table__  # type: ignore[attr-defined]
                session.exec(self._insert(table).on_conflict_do_nothing(), params=deliveries)
            ids = [row.id for row in rows]
            if ids:
                outbox = OutboxRow.__table__  # type: ignore[attr-defined]
                session.exec(core_update(outbox).where(outbox.c.id.in_(ids)).values(fanned=True))
            return len(rows)

    def pending_heads(self, channel: str, limit: int = 2000) -> list[tuple[str, str, float]]:
        """(id, subject, next_at) of the channel's pending deliveries, oldest event first:
        cheap (no bodies), so the dispatcher can pick what may go on every step."""
        table = DeliveryRow.__table__  # type: ignore[attr-defined]
        query = (
            core_select(table.c.id, table.c.subject, table.c.next_at)
            .where(table.c.channel == channel, table.c.state == "pending")
            .order_by(table.c.outbox_id)
            .limit(limit)
        )
        with self._session("list pending deliveries") as session:
            rows = session.connection().execute(query).all()
            return [(str(i), str(subject), float(at)) for i, subject, at in rows]

    def load_deliveries(self, ids: Sequence[str]) -> list[Delivery]:
        """The deliveries named, with their events, in event order."""
        if not ids:
            return []
        query = (
            select(DeliveryRow, OutboxRow)
            .join(OutboxRow, col(OutboxRow.id) == col(DeliveryRow.outbox_id))
            .where(col(DeliveryRow.id).in_(list(ids)))
            .order_by(col(DeliveryRow.outbox_id))
        )
        with self._session("read deliveries") as session:
            return [_delivery(d, o) for d, o in session.exec(query).all()]

    def pending_deliveries(self, channel: str, limit: int = 500) -> list[Delivery]:
        """The channel's pending deliveries, oldest event first."""
        return self.list_deliveries(channel=channel, states=("pending",), limit=limit)

    def list_deliveries(
        self,
        *,
        channel: str | None = None,
        states: Sequence[str] = ("pending", "dead"),
        limit: int = 100,
    ) -> list[Delivery]:
        query = (
            select(DeliveryRow, OutboxRow)
            .join(OutboxRow, col(OutboxRow.id) == col(DeliveryRow.outbox_id))
            .where(col(DeliveryRow.state).in_(list(states)))
            .order_by(col(DeliveryRow.outbox_id), col(DeliveryRow.channel))
            .limit(limit)
        )
        if channel is not None:
            query = query.where(col(DeliveryRow.channel) == channel)
        with self._session("list deliveries") as session:
            return [_delivery(d, o) for d, o in session.exec(query).all()]

    def finish_delivery(
        self, delivery_id: str, state: DeliveryState, *, next_at: float, error: str, now: float
    ) -> None:
        """Record one attempt: delivered, dead, or pending again from `next_at`."""
        table = DeliveryRow.__table__  # type: ignore[attr-defined]
        statement = (
            core_update(table)
            .where(table.c.id == delivery_id)
            .values(
                state=state,
                attempts=table.c.attempts + 1,
                next_at=next_at,
                last_error=error[:500],
                updated_at=now,
            )
        )
        with self._session("record delivery") as session:
            session.exec(statement)

    def retry_deliveries(self, ids: Sequence[str], now: float) -> int:
        """Dead deliveries (all when `ids` is empty) back to pending, attempts reset."""
        table = DeliveryRow.__table__  # type: ignore[attr-defined]
        statement = core_update(table).where(table.c.state == "dead")
        if ids:
            statement = statement.where(table.c.id.in_(list(ids)))
        statement = statement.values(state="pending", attempts=0, next_at=now, updated_at=now)
        with self._session("retry deliveries") as session:
            return int(session.exec(statement).rowcount)

    def queue_depths(self) -> dict[str, int]:
        table = DeliveryRow.__table__  # type: ignore[attr-defined]
        query = (
            core_select(table.c.channel, func.count())
            .where(table.c.state == "pending")
            .group_by(table.c.channel)
        )
        with self._session("count deliveries") as session:
            rows = session.connection().execute(query).all()
            return {channel: int(n) for channel, n in rows}

    def prune_outbox(self, before: float) -> int:
        """Forget finished deliveries (delivered or dead) last touched before `before`, and
        fanned-out events older than that with no delivery left; returns deliveries removed."""
        deliveries = DeliveryRow.__table__  # type: ignore[attr-defined]
        outbox = OutboxRow.__table__  # type: ignore[attr-defined]
        finished = core_delete(deliveries).where(
            deliveries.c.state.in_(["delivered", "dead"]), deliveries.c.updated_at < before
        )
        orphaned = core_delete(outbox).where(
            outbox.c.fanned.is_(True),
            outbox.c.at < before,
            ~core_select(deliveries.c.id).where(deliveries.c.outbox_id == outbox.c.id).exists(),
        )
        with self._session("prune outbox") as session:
            removed = int(session.exec(finished).rowcount)
            session.exec(orphaned)
            return removed

    # --- per-channel memory
    def channel_ref(self, channel: str, key: str) -> str | None:
        with self._session("read channel ref") as session:
            row = session.get(ChannelRefRow, (channel, key))
            return row.ref if row else None

    def set_channel_ref(self, channel: str, key: str, ref: str) -> None:
        table = ChannelRefRow.__table__  # type: ignore[attr-defined]
        with self._session("write channel ref") as session:
            statement = self._insert(table).values(channel=channel, key=key, ref=ref)
            session.exec(
                statement.on_conflict_do_update(
                    index_elements=[table.c.channel, table.c.key], set_={"ref": ref}
                )
            )

    def subscribers(self, channel: str, addresses: Sequence[str]) -> dict[str, str]:
        """address -> unsubscribe token for the addresses still subscribed (tokens made once)."""
        table = SubscriberRow.__table__  # type: ignore[attr-defined]
        rows = [
            {"token": secrets.token_urlsafe(24), "channel": channel, "address": a}
            for a in addresses
        ]
        with self._session("read subscribers") as session:
            if rows:
                session.exec(self._insert(table).on_conflict_do_nothing(), params=rows)
            query = select(SubscriberRow).where(col(SubscriberRow.channel) == channel)
            return {
                row.address: row.token
                for row in session.exec(query).all()
                if row.unsubscribed_at is None and row.address in addresses
            }

    def unsubscribe(self, token: str, now: float) -> str | None:
        """Marks the token's address unsubscribed; returns the address, None if unknown."""
        with self._session("unsubscribe") as session:
            row = session.get(SubscriberRow, token, with_for_update=True)
            if row is None:
                return None
            if row.unsubscribed_at is None:
                row.unsubscribed_at = now
                session.add(row)
            return row.address


def _delivery(d: DeliveryRow, o: OutboxRow) -> Delivery:
    return Delivery(
        id=d.id,
        outbox_id=d.outbox_id,
        channel=d.channel,
        subject=d.subject,
        event=o.event,
        at=o.at,
        facts=o.facts,
        body=o.body,
        state=d.state,
        attempts=d.attempts,
        next_at=d.next_at,
        last_error=d.last_error,
    )
