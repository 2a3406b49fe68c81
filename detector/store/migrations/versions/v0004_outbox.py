"""Notifications: the outbox written with each change, one delivery per (event, channel) with
its dead-letter state, channels' own ids (hosted Statuspage incidents) and email subscribers'
unsubscribe tokens.

Revision ID: 0004
Revises: 0002
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Same as detector.store.tables._ROW_ID: SQLite only auto-increments INTEGER PRIMARY KEY.
ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIME = sa.Double[float]()


def upgrade() -> None:
    op.create_table(
        "outbox",
        sa.Column("id", ROW_ID, autoincrement=True, nullable=False),
        sa.Column("event", sa.String(), nullable=False),
        sa.Column("subject", sa.String(), nullable=False),
        sa.Column("at", TIME, nullable=False),
        sa.Column("dedup", sa.String(), nullable=False),
        sa.Column("facts", sa.JSON(), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("channel", sa.String(), nullable=False),
        sa.Column("fanned", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
        sa.UniqueConstraint("dedup", name=op.f("uq_outbox_dedup")),
    )
    op.create_index(op.f("ix_outbox_fanned"), "outbox", ["fanned"])
    op.create_table(
        "deliveries",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("outbox_id", ROW_ID, nullable=False),
        sa.Column("channel", sa.String(), nullable=False),
        sa.Column("subject", sa.String(), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_at", TIME, nullable=False),
        sa.Column("last_error", sa.String(), nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deliveries")),
        sa.UniqueConstraint("outbox_id", "channel", name=op.f("uq_deliveries_outbox_id_channel")),
    )
    op.create_index("ix_deliveries_channel_state", "deliveries", ["channel", "state"])
    op.create_table(
        "channel_refs",
        sa.Column("channel", sa.String(), nullable=False),
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("ref", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("channel", "key", name=op.f("pk_channel_refs")),
    )
    op.create_table(
        "subscribers",
        sa.Column("token", sa.String(), nullable=False),
        sa.Column("channel", sa.String(), nullable=False),
        sa.Column("address", sa.String(), nullable=False),
        sa.Column("unsubscribed_at", TIME, nullable=True),
        sa.PrimaryKeyConstraint("token", name=op.f("pk_subscribers")),
        sa.UniqueConstraint("channel", "address", name=op.f("uq_subscribers_channel_address")),
    )


def downgrade() -> None:
    op.drop_table("subscribers")
    op.drop_table("channel_refs")
    op.drop_index("ix_deliveries_channel_state", table_name="deliveries")
    op.drop_table("deliveries")
    op.drop_index(op.f("ix_outbox_fanned"), table_name="outbox")
    op.drop_table("outbox")
