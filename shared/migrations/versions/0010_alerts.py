"""Alerts: breaches, 督办, escalations, emergency switches, sensors offline/back, spikes.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-29 19:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import shared.db.types

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "alerts",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("title_en", sa.Text(), nullable=False),
        sa.Column("district", sa.String(length=32), nullable=True),
        sa.Column("street", sa.String(length=32), nullable=True),
        sa.Column("ticket_id", sa.Uuid(), nullable=True),
        sa.Column("at", shared.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("source_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", shared.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("streamed_at", shared.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alerts")),
    )
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_alerts_at"), ["at"], unique=False)
        batch_op.create_index("ix_alerts_district_at", ["district", "at"], unique=False)
        batch_op.create_index("ix_alerts_street_at", ["street", "at"], unique=False)
        batch_op.create_index(batch_op.f("ix_alerts_ticket_id"), ["ticket_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_alerts_ticket_id"))
        batch_op.drop_index("ix_alerts_street_at")
        batch_op.drop_index("ix_alerts_district_at")
        batch_op.drop_index(batch_op.f("ix_alerts_at"))
    op.drop_table("alerts")
