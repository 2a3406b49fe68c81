"""Leadership: the lease carries a fencing token, and the database allows one unresolved
incident per (rule, component) (a partial unique index), whatever the code does.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OPEN = sa.text("status != 'resolved'")


def upgrade() -> None:
    with op.batch_alter_table("leases") as table:
        table.add_column(sa.Column("token", sa.BigInteger(), server_default="0", nullable=False))
    # A store that already holds two open incidents on one series: keep the newest open.
    op.execute(
        "UPDATE incidents SET status = 'resolved', resolved_at = opened_at "
        "WHERE status != 'resolved' AND EXISTS (SELECT 1 FROM incidents AS newer "
        "WHERE newer.rule = incidents.rule AND newer.component = incidents.component "
        "AND newer.status != 'resolved' AND (newer.opened_at > incidents.opened_at "
        "OR (newer.opened_at = incidents.opened_at AND newer.id > incidents.id)))"
    )
    op.create_index(
        "uq_incidents_open",
        "incidents",
        ["rule", "component"],
        unique=True,
        sqlite_where=OPEN,
        postgresql_where=OPEN,
    )


def downgrade() -> None:
    op.drop_index("uq_incidents_open", table_name="incidents")
    with op.batch_alter_table("leases") as table:
        table.drop_column("token")
