"""Held events: events dispatch could not ticket, set aside with the reason and a retry time.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-22 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import shared.db.types

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "held_events",
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("first_failed_at", shared.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_failed_at", shared.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("retry_at", shared.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_held_events")),
    )


def downgrade() -> None:
    op.drop_table("held_events")
