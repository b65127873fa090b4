"""KPI facts: what the metrics service derives from events and ticket timelines.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29 19:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import shared.db.types

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OPEN = "status IN ('new', 'dispatched', 'accepted', 'in_progress', 'resolved', 'parked')"


def _at(name: str, *, nullable: bool = True) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, shared.db.types.UTCDateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "kpi_events",
        sa.Column("event_id", sa.Uuid(), nullable=False),
        _at("received_at"),
        sa.Column("channel", sa.String(length=16), nullable=True),
        sa.Column("category", sa.String(length=64), nullable=True),
        sa.Column("district", sa.String(length=32), nullable=True),
        sa.Column("street", sa.String(length=32), nullable=True),
        sa.Column("joined", sa.Boolean(), nullable=False),
        _at("touched_at", nullable=False),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_kpi_events")),
    )
    op.create_index("ix_kpi_events_received_at", "kpi_events", ["received_at"])
    op.create_index("ix_kpi_events_touched_at", "kpi_events", ["touched_at"])

    op.create_table(
        "kpi_tickets",
        sa.Column("ticket_id", sa.Uuid(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("merged", sa.Boolean(), nullable=False),
        sa.Column("category", sa.String(length=64), nullable=False),
        sa.Column("district", sa.String(length=32), nullable=True),
        sa.Column("street", sa.String(length=32), nullable=True),
        sa.Column("department", sa.String(length=64), nullable=True),
        _at("filed_at", nullable=False),
        _at("accept_due_at"),
        _at("handle_due_at"),
        sa.Column("breached", sa.Boolean(), nullable=False),
        _at("closed_at"),
        sa.Column("close_ms", sa.BigInteger(), nullable=True),
        sa.Column("deferred", sa.Boolean(), nullable=False),
        _at("missed_due_at"),
        _at("first_accepted_at"),
        sa.Column("accept_ms", sa.BigInteger(), nullable=True),
        _at("deadline"),
        _at("touched_at", nullable=False),
        sa.PrimaryKeyConstraint("ticket_id", name=op.f("pk_kpi_tickets")),
    )
    op.create_index("ix_kpi_tickets_filed_at", "kpi_tickets", ["filed_at"])
    op.create_index("ix_kpi_tickets_deadline", "kpi_tickets", ["deadline"])
    op.create_index("ix_kpi_tickets_closed_at", "kpi_tickets", ["closed_at"])
    op.create_index("ix_kpi_tickets_first_accepted_at", "kpi_tickets", ["first_accepted_at"])
    op.create_index("ix_kpi_tickets_touched_at", "kpi_tickets", ["touched_at"])
    op.create_index(
        "ix_kpi_tickets_open",
        "kpi_tickets",
        ["district", "street"],
        sqlite_where=sa.text(OPEN),
        postgresql_where=sa.text(OPEN),
    )

    op.create_table(
        "kpi_transitions",
        sa.Column("ticket_id", sa.Uuid(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        _at("at", nullable=False),
        sa.Column("passed", sa.Boolean(), nullable=True),
        sa.Column("score", sa.Integer(), nullable=True),
        sa.Column("district", sa.String(length=32), nullable=True),
        sa.Column("street", sa.String(length=32), nullable=True),
        sa.PrimaryKeyConstraint("ticket_id", "seq", name=op.f("pk_kpi_transitions")),
    )
    op.create_index("ix_kpi_transitions_at", "kpi_transitions", ["at"])


def downgrade() -> None:
    op.drop_table("kpi_transitions")
    op.drop_table("kpi_tickets")
    op.drop_table("kpi_events")
