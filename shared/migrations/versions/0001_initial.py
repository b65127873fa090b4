"""Initial schema: areas, identity, events, outbox/inbox, tickets.

Revision ID: 0001
Revises:
Create Date: 2026-11-21 07:22:35.059941
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import shared.db.types

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("scope", sa.String(length=64), nullable=False),
        sa.Column("created_at", shared.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", shared.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_api_keys_key_hash")),
        sa.UniqueConstraint("name", name=op.f("uq_api_keys_name")),
    )
    op.create_table(
        "areas",
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("level", sa.String(length=16), nullable=False),
        sa.Column("parent", sa.String(length=32), nullable=True),
        sa.Column("geometry", sa.LargeBinary(), nullable=False),
        sa.Column("imported_at", shared.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_areas")),
    )
    with op.batch_alter_table("areas", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_areas_level"), ["level"], unique=False)
        batch_op.create_index(batch_op.f("ix_areas_parent"), ["parent"], unique=False)

    op.create_table(
        "events",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("source_ref", sa.String(length=200), nullable=True),
        sa.Column("category", sa.String(length=64), nullable=False),
        sa.Column("priority", sa.String(length=16), nullable=True),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("lon", sa.Float(), nullable=True),
        sa.Column("lat", sa.Float(), nullable=True),
        sa.Column("address", sa.Text(), nullable=True),
        sa.Column("street_code", sa.String(length=32), nullable=True),
        sa.Column("district_code", sa.String(length=32), nullable=True),
        sa.Column("city_code", sa.String(length=32), nullable=True),
        sa.Column("geotag_method", sa.String(length=16), nullable=False),
        sa.Column("reported_at", shared.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("received_at", shared.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("submitted_by", sa.String(length=100), nullable=True),
        sa.Column("raw", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
        sa.UniqueConstraint("source", "source_ref", name="uq_events_source_ref"),
    )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_events_district_code"), ["district_code"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_events_street_code"), ["street_code"], unique=False)

    op.create_table(
        "inbox",
        sa.Column("consumer", sa.String(length=64), nullable=False),
        sa.Column("message_id", sa.Uuid(), nullable=False),
        sa.Column("processed_at", shared.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("consumer", "message_id", name=op.f("pk_inbox")),
    )
    op.create_table(
        "outbox",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("stream", sa.String(length=64), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", shared.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
    )
    op.create_table(
        "tickets",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("category", sa.String(length=64), nullable=False),
        sa.Column("priority", sa.String(length=16), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("owner_tier", sa.String(length=16), nullable=False),
        sa.Column("owner_code", sa.String(length=32), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("lon", sa.Float(), nullable=True),
        sa.Column("lat", sa.Float(), nullable=True),
        sa.Column("street_code", sa.String(length=32), nullable=True),
        sa.Column("district_code", sa.String(length=32), nullable=True),
        sa.Column("city_code", sa.String(length=32), nullable=True),
        sa.Column("geotag_method", sa.String(length=16), nullable=False),
        sa.Column("report_count", sa.Integer(), nullable=False),
        sa.Column("created_at", shared.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", shared.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tickets")),
    )
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_tickets_district_code"), ["district_code"], unique=False
        )
        batch_op.create_index("ix_tickets_owner", ["owner_tier", "owner_code"], unique=False)
        batch_op.create_index(batch_op.f("ix_tickets_street_code"), ["street_code"], unique=False)

    op.create_table(
        "users",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("username", sa.String(length=100), nullable=False),
        sa.Column("password_hash", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("scope", sa.String(length=64), nullable=False),
        sa.Column("department", sa.String(length=64), nullable=True),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", shared.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("username", name=op.f("uq_users_username")),
    )
    op.create_table(
        "ticket_events",
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("ticket_id", sa.Uuid(), nullable=False),
        sa.Column("linked_at", shared.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["ticket_id"],
            ["tickets.id"],
            name=op.f("fk_ticket_events_ticket_id_tickets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_ticket_events")),
    )
    with op.batch_alter_table("ticket_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ticket_events_ticket_id"), ["ticket_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("ticket_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ticket_events_ticket_id"))

    op.drop_table("ticket_events")
    op.drop_table("users")
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tickets_street_code"))
        batch_op.drop_index("ix_tickets_owner")
        batch_op.drop_index(batch_op.f("ix_tickets_district_code"))

    op.drop_table("tickets")
    op.drop_table("outbox")
    op.drop_table("inbox")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_events_street_code"))
        batch_op.drop_index(batch_op.f("ix_events_district_code"))

    op.drop_table("events")
    with op.batch_alter_table("areas", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_areas_parent"))
        batch_op.drop_index(batch_op.f("ix_areas_level"))

    op.drop_table("areas")
    op.drop_table("api_keys")
