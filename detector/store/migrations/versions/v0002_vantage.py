"""Vantage points and evidence: probe results say why they failed, which instance produced
them and whether it was suspect; incident updates keep internal evidence beside the public
body and whether they are public; incidents record when the failure began; maintenances
record when they were planned.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIME = sa.Double[float]()


def upgrade() -> None:
    # Server defaults fill the rows written before this revision (same as detector.store.tables).
    with op.batch_alter_table("probe_results") as table:
        table.add_column(
            sa.Column("failure_kind", sa.String(), server_default="fail", nullable=False)
        )
        table.add_column(sa.Column("instance", sa.String(), server_default="", nullable=False))
        table.add_column(
            sa.Column("suspect", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
    with op.batch_alter_table("incident_updates") as table:
        table.add_column(sa.Column("evidence", sa.String(), server_default="", nullable=False))
        table.add_column(
            sa.Column("public", sa.Boolean(), server_default=sa.true(), nullable=False)
        )
    with op.batch_alter_table("incidents") as table:
        table.add_column(sa.Column("started_at", TIME, nullable=True))
    with op.batch_alter_table("maintenances") as table:
        table.add_column(sa.Column("created_at", TIME, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("maintenances") as table:
        table.drop_column("created_at")
    with op.batch_alter_table("incidents") as table:
        table.drop_column("started_at")
    with op.batch_alter_table("incident_updates") as table:
        table.drop_column("public")
        table.drop_column("evidence")
    with op.batch_alter_table("probe_results") as table:
        for column in ("suspect", "instance", "failure_kind"):
            table.drop_column(column)
