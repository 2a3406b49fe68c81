"""The initial schema: components, incidents and their updates, deploys, maintenances,
probe results, the engine state and leases.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Same as detector.store.tables._ROW_ID: SQLite only auto-increments INTEGER PRIMARY KEY.
ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIME = sa.Double[float]()


def upgrade() -> None:
    op.create_table(
        "components",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("group", sa.String(), nullable=False),
        sa.Column("description", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_components")),
    )
    op.create_table(
        "incidents",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("rule", sa.String(), nullable=False),
        sa.Column("component", sa.String(), nullable=False),
        sa.Column("title", sa.String(), nullable=False),
        sa.Column("cause", sa.String(), nullable=False),
        sa.Column("deploy", sa.String(), nullable=True),
        sa.Column("impact", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("component_status", sa.String(), nullable=False),
        sa.Column("opened_at", TIME, nullable=False),
        sa.Column("resolved_at", TIME, nullable=True),
        sa.Column("markets", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incidents")),
    )
    op.create_index(op.f("ix_incidents_opened_at"), "incidents", ["opened_at"])
    op.create_table(
        "incident_updates",
        sa.Column("id", ROW_ID, autoincrement=True, nullable=False),
        sa.Column("incident_id", sa.String(), nullable=False),
        sa.Column("at", TIME, nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("component_status", sa.String(), nullable=False),
        sa.Column("body", sa.String(), nullable=False),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name=op.f("fk_incident_updates_incident_id_incidents"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incident_updates")),
        sa.UniqueConstraint(
            "incident_id",
            "at",
            "status",
            "component_status",
            name=op.f("uq_incident_updates_incident_id_at_status_component_status"),
        ),
    )
    op.create_table(
        "deploys",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("at", TIME, nullable=False),
        sa.Column("service", sa.String(), nullable=False),
        sa.Column("version", sa.String(), nullable=False),
        sa.Column("components", sa.JSON(), nullable=False),
        sa.Column("bad", sa.Boolean(), nullable=False),
        sa.Column("flagged_at", TIME, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deploys")),
    )
    op.create_index(op.f("ix_deploys_at"), "deploys", ["at"])
    op.create_table(
        "maintenances",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("start_at", TIME, nullable=False),
        sa.Column("end_at", TIME, nullable=False),
        sa.Column("components", sa.JSON(), nullable=False),
        sa.Column("title", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_maintenances")),
    )
    op.create_index(op.f("ix_maintenances_end_at"), "maintenances", ["end_at"])
    op.create_table(
        "probe_results",
        sa.Column("id", ROW_ID, autoincrement=True, nullable=False),
        sa.Column("at", TIME, nullable=False),
        sa.Column("probe", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("component", sa.String(), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("latency_s", TIME, nullable=True),
        sa.Column("error", sa.String(), nullable=True),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("phases", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_probe_results")),
    )
    op.create_index(op.f("ix_probe_results_at"), "probe_results", ["at"])
    op.create_table(
        "engine_state",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("state", sa.JSON(), nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_engine_state")),
    )
    op.create_table(
        "leases",
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("holder", sa.String(), nullable=False),
        sa.Column("expires_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_leases")),
    )


def downgrade() -> None:
    op.drop_table("leases")
    op.drop_table("engine_state")
    op.drop_index(op.f("ix_probe_results_at"), table_name="probe_results")
    op.drop_table("probe_results")
    op.drop_index(op.f("ix_maintenances_end_at"), table_name="maintenances")
    op.drop_table("maintenances")
    op.drop_index(op.f("ix_deploys_at"), table_name="deploys")
    op.drop_table("deploys")
    op.drop_table("incident_updates")
    op.drop_index(op.f("ix_incidents_opened_at"), table_name="incidents")
    op.drop_table("incidents")
    op.drop_table("components")
