"""Results say when they were written: `probe_results.written_at`, the writer's clock at the
flush that wrote them, indexed. A leader reads other instances' results by it, so a batch a
peer writes late (after losing the store) still reaches its windows. Rows written before this
revision get their own `at`: as if written when they happened.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIME = sa.Double[float]()


def upgrade() -> None:
    # Nullable first, filled, then NOT NULL: no server default stays behind (tables.py has
    # none; every write names the column).
    with op.batch_alter_table("probe_results") as table:
        table.add_column(sa.Column("written_at", TIME, nullable=True))
    op.execute("UPDATE probe_results SET written_at = at")
    with op.batch_alter_table("probe_results") as table:
        table.alter_column("written_at", existing_type=TIME, nullable=False)
    op.create_index(op.f("ix_probe_results_written_at"), "probe_results", ["written_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_probe_results_written_at"), table_name="probe_results")
    with op.batch_alter_table("probe_results") as table:
        table.drop_column("written_at")
