"""Event idempotency per sender: (submitted_by, source, source_ref) instead of (source, source_ref).

With the old key a second integrator reusing a reference got the first one's event back (and
its own was dropped): one sender could read, or pre-empt, another's events.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-21 12:05:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_constraint("uq_events_source_ref", type_="unique")
        batch_op.create_unique_constraint(
            "uq_events_sender_ref", ["submitted_by", "source", "source_ref"]
        )


def downgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_constraint("uq_events_sender_ref", type_="unique")
        batch_op.create_unique_constraint("uq_events_source_ref", ["source", "source_ref"])
