"""The leader lease and its fencing token, in the shared store (PostgreSQL; on SQLite the
one daemon leads and a file lock keeps a second one out, see `detector.leader`).

One row per lease in `leases`: who holds it, until when, and a token that grows by one at
every change of holder. A leader write checks, inside its own transaction and with the row
locked for share, that the token is still its own: a takeover (which updates the row) then
either waits for that write to commit or makes it fail. A paused or partitioned ex-leader's
late write is refused, never applied.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass

from sqlalchemy import Connection, select, update
from sqlalchemy.dialects.postgresql import insert as postgres_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine

from detector.model import ProbeResult
from detector.store import tables
from detector.store.base import PeerRow, StoreError, Takeover
from detector.store.database import store_errors

LEADER = "leader"


class Fenced(StoreError):
    """A leader write carried a token that is no longer the lease's: refused."""


@dataclass(frozen=True, slots=True)
class Fence:
    holder: str  # unique per daemon process
    token: int
    lease: str = LEADER


def check_fence(connection: Connection, fence: Fence) -> None:
    """Inside a write transaction: raise Fenced unless `fence` still holds the lease."""
    c = tables.leases.c
    query = select(c.holder, c.token).where(c.name == fence.lease)
    if connection.dialect.name == "postgresql":
        query = query.with_for_update(read=True)  # a takeover waits for this transaction
    row = connection.execute(query).first()
    if row is None or (row.holder, row.token) != (fence.holder, fence.token):
        now = f"token {row.token} of {row.holder}" if row is not None else "no lease"
        raise Fenced(f"leader write refused: token {fence.token} is stale ({now} holds it)")


def acquire(
    connection: Connection, holder: str, now: float, ttl: float, lease: str = LEADER
) -> Fence | None:
    """Renew the lease `holder` has, or take it when it is free or expired; None when
    another holder's lease is still running. One transaction (the caller's)."""
    c = tables.leases.c
    insert = postgres_insert if connection.dialect.name == "postgresql" else sqlite_insert
    connection.execute(
        insert(tables.leases)
        .values(name=lease, holder="", expires_at=0.0, token=0)
        .on_conflict_do_nothing()
    )
    query = select(c.holder, c.token, c.expires_at).where(c.name == lease)
    if connection.dialect.name == "postgresql":
        query = query.with_for_update()
    row = connection.execute(query).one()
    if row.holder == holder:
        token = row.token
    elif row.expires_at <= now or not row.holder:
        token = row.token + 1
    else:
        return None
    connection.execute(
        update(tables.leases)
        .where(c.name == lease)
        .values(holder=holder, token=token, expires_at=now + ttl)
    )
    return Fence(holder, token, lease)


def release(connection: Connection, fence: Fence) -> None:
    """Give the lease up at once (a clean stop): the next standby takes it without waiting."""
    c = tables.leases.c
    connection.execute(
        update(tables.leases)
        .where(c.name == fence.lease, c.holder == fence.holder, c.token == fence.token)
        .values(expires_at=0.0)
    )


def peer_results(
    connection: Connection, since: float, instance: str, fed: Container[int] = ()
) -> list[PeerRow]:
    """Results other instances wrote after `since` (by `written_at`, the writer's flush: a
    batch written late after an outage is found although its `at` is old), oldest written
    first, with their row ids. The caller skips the ids it has `fed`; whole rows are read only
    from the oldest stamp among the others, so the overlap it reads again costs an id scan."""
    c = tables.probe_results.c
    where = [c.written_at > since, c.instance != instance]
    if fed:
        stamps = connection.execute(select(c.id, c.written_at).where(*where))
        new = [written_at for row_id, written_at in stamps if row_id not in fed]
        if not new:
            return []
        where[0] = c.written_at >= min(new)
    query = (
        select(c.id, c.written_at, *(c[name] for name in tables.RESULT_COLUMNS))
        .where(*where)
        .order_by(c.written_at, c.id)
    )
    return [PeerRow(row[0], row[1], ProbeResult(*row[2:])) for row in connection.execute(query)]


def takeover_read(
    connection: Connection, since: float, peer_since: float, instance: str
) -> Takeover:
    state = tables.read_engine_state(connection)
    results = [ProbeResult(*row) for row in connection.execute(tables.results_query(since))]
    return Takeover(state, results, peer_results(connection, peer_since, instance))


class LeaseStore:
    """The lease operations of SqlStore (a mixin: SqlStore sets `engine` and `url`)."""

    engine: Engine
    url: str

    def acquire_lease(self, holder: str, now: float, ttl: float) -> Fence | None:
        with store_errors("renew leader lease", self.url), self.engine.begin() as connection:
            return acquire(connection, holder, now, ttl)

    def release_lease(self, fence: Fence) -> None:
        with store_errors("release leader lease", self.url), self.engine.begin() as connection:
            release(connection, fence)

    def peer_results(self, since: float, instance: str, fed: Container[int] = ()) -> list[PeerRow]:
        where = "read other instances' results"
        with store_errors(where, self.url), self.engine.connect() as connection:
            return peer_results(connection, since, instance, fed)

    def takeover_read(self, since: float, peer_since: float, instance: str) -> Takeover:
        where = "read the store for a takeover"
        with store_errors(where, self.url), self.engine.connect() as connection:
            if connection.dialect.name == "postgresql":  # one snapshot for every read
                connection.execution_options(isolation_level="REPEATABLE READ")
            with connection.begin():  # SQLite: one instance, no peers to race with
                return takeover_read(connection, since, peer_since, instance)
