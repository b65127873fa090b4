"""Tickets record the hash of their latest timeline entry, so an audit notices deleted entries.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-21 12:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.add_column(sa.Column("timeline_head", sa.String(length=64), nullable=True))
    # Existing tickets: their current latest entry becomes the recorded head.
    op.execute(
        "UPDATE tickets SET timeline_head = (SELECT t.hash FROM ticket_transitions t "
        "WHERE t.ticket_id = tickets.id ORDER BY t.seq DESC LIMIT 1)"
    )


def downgrade() -> None:
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.drop_column("timeline_head")
