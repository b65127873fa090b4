"""Dispatch: routing and deadlines on tickets, timeline, timers, rules, supervision, emergency.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21 08:32:28.120988
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import shared.db.types

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copy of shared.db.models.OPEN_TICKET_SQL as of this revision.
OPEN_TICKET_SQL = "status IN ('new', 'dispatched', 'accepted', 'in_progress', 'resolved', 'parked')"


def upgrade() -> None:
    op.create_table(
        "emergency_modes",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("area", sa.String(length=32), nullable=False),
        sa.Column("incident", sa.String(length=200), nullable=False),
        sa.Column("categories", sa.JSON(), nullable=False),
        sa.Column("deadline_factor", sa.Float(), nullable=False),
        sa.Column("started_at", shared.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("started_by", sa.String(length=100), nullable=False),
        sa.Column("ended_at", shared.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("ended_by", sa.String(length=100), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_emergency_modes")),
    )
    with op.batch_alter_table("emergency_modes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_emergency_modes_area"), ["area"], unique=False)

    op.create_table(
        "routing_rules",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("category", sa.String(length=64), nullable=False),
        sa.Column("district", sa.String(length=32), nullable=True),
        sa.Column("priority", sa.String(length=16), nullable=True),
        sa.Column("source", sa.String(length=16), nullable=True),
        sa.Column("department", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_routing_rules")),
    )
    with op.batch_alter_table("routing_rules", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_routing_rules_category"), ["category"], unique=False)

    op.create_table(
        "supervision_orders",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("ticket_id", sa.Uuid(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("from_tier", sa.String(length=16), nullable=False),
        sa.Column("from_code", sa.String(length=32), nullable=False),
        sa.Column("to_tier", sa.String(length=16), nullable=False),
        sa.Column("to_code", sa.String(length=32), nullable=False),
        sa.Column("created_at", shared.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("closed_at", shared.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["ticket_id"],
            ["tickets.id"],
            name=op.f("fk_supervision_orders_ticket_id_tickets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_supervision_orders")),
    )
    with op.batch_alter_table("supervision_orders", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_supervision_orders_ticket_id"), ["ticket_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_supervision_orders_to_code"), ["to_code"], unique=False
        )

    op.create_table(
        "ticket_transitions",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("ticket_id", sa.Uuid(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("at", shared.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("from_status", sa.String(length=16), nullable=True),
        sa.Column("to_status", sa.String(length=16), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["ticket_id"],
            ["tickets.id"],
            name=op.f("fk_ticket_transitions_ticket_id_tickets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ticket_transitions")),
        sa.UniqueConstraint("ticket_id", "seq", name="uq_ticket_transitions_seq"),
    )
    with op.batch_alter_table("ticket_transitions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_ticket_transitions_ticket_id"), ["ticket_id"], unique=False
        )

    op.create_table(
        "timers",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("ticket_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("due_at", shared.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("fired_at", shared.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("fired_by", sa.String(length=100), nullable=True),
        sa.ForeignKeyConstraint(
            ["ticket_id"],
            ["tickets.id"],
            name=op.f("fk_timers_ticket_id_tickets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_timers")),
    )
    with op.batch_alter_table("timers", schema=None) as batch_op:
        batch_op.create_index(
            "ix_timers_pending",
            ["due_at"],
            unique=False,
            sqlite_where=sa.text("fired_at IS NULL"),
            postgresql_where=sa.text("fired_at IS NULL"),
        )
        batch_op.create_index(batch_op.f("ix_timers_ticket_id"), ["ticket_id"], unique=False)

    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("source", sa.String(length=16), server_default="api", nullable=False)
        )
        batch_op.add_column(sa.Column("department", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("sensor_id", sa.String(length=64), nullable=True))
        batch_op.add_column(
            sa.Column("accept_due_at", shared.db.types.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column("handle_due_at", shared.db.types.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column("overdue", sa.Boolean(), server_default=sa.text("(false)"), nullable=False)
        )
        batch_op.add_column(
            sa.Column("rework_count", sa.Integer(), server_default=sa.text("0"), nullable=False)
        )
        batch_op.add_column(sa.Column("merged_into", sa.Uuid(), nullable=True))
        batch_op.add_column(sa.Column("emergency", sa.String(length=200), nullable=True))
        batch_op.add_column(
            sa.Column("dispatched_at", shared.db.types.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column("accepted_at", shared.db.types.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column("resolved_at", shared.db.types.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column("closed_at", shared.db.types.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(sa.Column("satisfaction", sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f("ix_tickets_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_tickets_department"), ["department"], unique=False)
        batch_op.create_index(batch_op.f("ix_tickets_sensor_id"), ["sensor_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_tickets_source"), ["source"], unique=False)
        batch_op.create_index("ix_tickets_status_category", ["status", "category"], unique=False)
        batch_op.create_index(
            "ix_tickets_open_place",
            ["category", "lon", "lat", "created_at"],
            unique=False,
            sqlite_where=sa.text(OPEN_TICKET_SQL),
            postgresql_where=sa.text(OPEN_TICKET_SQL),
        )


def downgrade() -> None:
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.drop_index("ix_tickets_open_place")
        batch_op.drop_index("ix_tickets_status_category")
        batch_op.drop_index(batch_op.f("ix_tickets_source"))
        batch_op.drop_index(batch_op.f("ix_tickets_sensor_id"))
        batch_op.drop_index(batch_op.f("ix_tickets_department"))
        batch_op.drop_index(batch_op.f("ix_tickets_created_at"))
        batch_op.drop_column("satisfaction")
        batch_op.drop_column("closed_at")
        batch_op.drop_column("resolved_at")
        batch_op.drop_column("accepted_at")
        batch_op.drop_column("dispatched_at")
        batch_op.drop_column("emergency")
        batch_op.drop_column("merged_into")
        batch_op.drop_column("rework_count")
        batch_op.drop_column("overdue")
        batch_op.drop_column("handle_due_at")
        batch_op.drop_column("accept_due_at")
        batch_op.drop_column("sensor_id")
        batch_op.drop_column("department")
        batch_op.drop_column("source")

    with op.batch_alter_table("timers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_timers_ticket_id"))
        batch_op.drop_index(
            "ix_timers_pending",
            sqlite_where=sa.text("fired_at IS NULL"),
            postgresql_where=sa.text("fired_at IS NULL"),
        )

    op.drop_table("timers")
    with op.batch_alter_table("ticket_transitions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ticket_transitions_ticket_id"))

    op.drop_table("ticket_transitions")
    with op.batch_alter_table("supervision_orders", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_supervision_orders_to_code"))
        batch_op.drop_index(batch_op.f("ix_supervision_orders_ticket_id"))

    op.drop_table("supervision_orders")
    with op.batch_alter_table("routing_rules", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_routing_rules_category"))

    op.drop_table("routing_rules")
    with op.batch_alter_table("emergency_modes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_emergency_modes_area"))

    op.drop_table("emergency_modes")
