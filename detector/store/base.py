"""The one Store protocol. SQLite and PostgreSQL implement it and pass the same contract tests.

Every method is synchronous and short; the daemon calls them from a worker thread so the
event loop never blocks on the database.
"""

from __future__ import annotations

from collections.abc import Container, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from detector.model import (
    ComponentStatus,
    Decision,
    Deploy,
    Event,
    Incident,
    IncidentStatus,
    IncidentUpdate,
    Maintenance,
    ProbeResult,
)

if TYPE_CHECKING:
    from detector.store.audit import AuditEntry
    from detector.store.lease import Fence


class StoreError(Exception):
    """The store could not do what was asked (unreachable, read-only, constraint)."""


class NotFound(StoreError):
    """The id named does not exist."""


class PeerRow(NamedTuple):
    """Another instance's stored result, as a leader reads it (`Store.peer_results`)."""

    id: int  # the row's: the reader skips the ids it has fed already
    written_at: float  # the writer's clock at its flush: the reader's watermark
    result: ProbeResult


class Takeover(NamedTuple):
    """What a new leader rebuilds its engine from, read in one snapshot
    (`Store.takeover_read`)."""

    state: dict[str, Any] | None  # the engine state blob the last leader saved
    results: list[ProbeResult]  # every instance's results with `at` after the horizon
    peers: list[PeerRow]  # other instances' results written after the peer watermark


@dataclass(frozen=True, slots=True)
class ComponentRecord:
    id: str  # "group/slug"
    name: str
    group: str  # "sendcloud" | "carriers" | "integrations"
    description: str
    status: ComponentStatus
    position: int
    updated_at: float


class Store(Protocol):
    # --- schema and lifecycle
    def create_schema(self) -> None:
        """SQLite: create the tables, or migrate an older file to the newest revision.
        PostgreSQL uses `detector db upgrade`; here it only checks the schema is at the
        newest revision (StoreError naming the command if not)."""

    def close(self) -> None: ...

    # --- components (from config; status from the engine)
    def sync_components(self, components: Sequence[ComponentRecord]) -> None:
        """Insert/update names, groups and positions; keep stored statuses."""

    def list_components(self) -> list[ComponentRecord]: ...

    # --- the engine's writes: one transaction, so a crash never splits them
    def commit_engine(
        self,
        decisions: Sequence[Decision],
        engine_state: Mapping[str, Any],
        component_statuses: Mapping[str, ComponentStatus],
        now: float,
        fence: Fence | None = None,
    ) -> None:
        """Apply incident opens/updates/resolves, save the engine state blob and the
        component statuses, and write the notification outbox rows for those changes
        (`detector.store.outbox`), all in one transaction; with `fence`, refused (`Fenced`)
        unless it still holds the leader lease, checked in that transaction. Idempotent on
        incident id and on (incident id, update at, status, component status) so a retry after
        a failure writes nothing twice. The state is stored as JSON (NaN and infinity become null);
        a component the store does not know yet is added, named after its slug."""

    def load_engine_state(self) -> dict[str, Any] | None: ...

    # --- leadership (detector.store.lease)
    def acquire_lease(self, holder: str, now: float, ttl: float) -> Fence | None:
        """Renew or take the leader lease; None while another holder's runs."""

    def release_lease(self, fence: Fence) -> None: ...

    def peer_results(self, since: float, instance: str, fed: Container[int] = ()) -> list[PeerRow]:
        """Other instances' results written (`written_at`) after `since`, oldest written first,
        each with its row id and written_at; may leave out rows written before the oldest one
        whose id is not in `fed` (the caller has those)."""

    def takeover_read(self, since: float, peer_since: float, instance: str) -> Takeover:
        """The engine state, every instance's results with `at > since` (oldest first) and the
        other instances' results written after `peer_since` (as `peer_results`), in one
        snapshot: a peer's batch committed while a new leader reads is in none of them, so the
        leader's next peer read feeds it, instead of counting it fed and missing it."""

    # --- incidents (read side and manual updates)
    def list_incidents(
        self,
        *,
        unresolved_only: bool = False,
        limit: int = 50,
        active_since: float | None = None,
        opened_before: float | None = None,
    ) -> list[Incident]:
        """Newest first, with their updates (oldest first). `active_since`: only those still
        open at or resolved after that time; `opened_before`: only those opened before it
        (both together: the incidents open at some time in that span, for history)."""

    def get_incident(self, incident_id: str) -> Incident:
        """Raises NotFound."""

    def add_incident_update(
        self, incident_id: str, status: IncidentStatus, body: str, now: float
    ) -> IncidentUpdate:
        """A manual update from on-call; raises NotFound. The update carries the incident's
        current component status (operational when resolving); a resolved incident takes
        only further `resolved` notes (StoreError otherwise)."""

    # --- probe results
    def add_results(self, results: Sequence[ProbeResult], written_at: float | None = None) -> None:
        """One batch, one transaction, stamped `written_at` (the writer's clock at the flush;
        None: each result's own `at`, for history). Peers are read by that stamp."""

    def results_since(self, since: float) -> list[ProbeResult]:
        """Results with at > since, oldest first, every field (failure kind, instance,
        suspect) as written; rebuilds engine windows after a restart."""

    def prune_results(self, before: float) -> int:
        """Delete results with at < before; returns how many."""

    # --- deploys and maintenance
    def add_deploy(self, deploy: Deploy) -> None: ...

    def flag_deploy_bad(self, deploy_id: str, now: float) -> Deploy:
        """Raises NotFound."""

    def recent_deploys(self, since: float) -> list[Deploy]: ...

    def add_maintenance(self, maintenance: Maintenance) -> Maintenance:
        """Stores it and returns it with its id set (kept if given)."""

    def cancel_maintenance(self, maintenance_id: str, now: float) -> None:
        """Ends it now (or deletes it if it has not started); raises NotFound."""

    def list_maintenances(self, *, ending_after: float) -> list[Maintenance]:
        """Windows ending after `ending_after`, soonest first: active and upcoming ones, or
        (with a past time) those of a span of history too."""

    # --- the audit trail of the write API (`detector.store.audit`)
    def add_audit(self, entry: AuditEntry) -> None: ...

    def list_audit(
        self, *, since: float | None = None, actor: str | None = None, limit: int = 100
    ) -> list[AuditEntry]:
        """Newest first."""

    # --- history for `detector export`
    def export_events(self, since: float, until: float) -> Iterator[Event]:
        """Results, deploys, bad flags and maintenances with their time (a maintenance's
        start) in `[since, until)`, sorted by time. A deploy flagged bad later is exported
        as it was (`bad` false) followed by a DeployFlaggedBad at the flag time."""
