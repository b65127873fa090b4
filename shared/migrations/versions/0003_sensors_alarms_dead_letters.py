"""MQTT intake: sensors, sensor alarms, dead letters; Mosquitto password hashes on API keys.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21 08:10:59.258925
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import shared.db.types

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "dead_letters",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("topic", sa.Text(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("payload_bytes", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("sensor_id", sa.String(length=64), nullable=True),
        sa.Column("integrator", sa.String(length=100), nullable=True),
        sa.Column("received_at", shared.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dead_letters")),
    )
    with op.batch_alter_table("dead_letters", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_dead_letters_integrator"), ["integrator"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_dead_letters_reason"), ["reason"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_dead_letters_received_at"), ["received_at"], unique=False
        )

    op.create_table(
        "sensors",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("integrator", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("lon", sa.Float(), nullable=False),
        sa.Column("lat", sa.Float(), nullable=False),
        sa.Column("interval_s", sa.Integer(), nullable=False),
        sa.Column("alarm_category", sa.String(length=64), nullable=False),
        sa.Column("rules", sa.JSON(), nullable=False),
        sa.Column("last_seen_at", shared.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", shared.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", shared.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sensors")),
    )
    with op.batch_alter_table("sensors", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sensors_integrator"), ["integrator"], unique=False)
        batch_op.create_index(batch_op.f("ix_sensors_updated_at"), ["updated_at"], unique=False)

    op.create_table(
        "sensor_alarms",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("sensor_id", sa.String(length=64), nullable=False),
        sa.Column("rule_key", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("category", sa.String(length=64), nullable=False),
        sa.Column("ref", sa.String(length=200), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=True),
        sa.Column("metric", sa.String(length=64), nullable=True),
        sa.Column("threshold", sa.Float(), nullable=True),
        sa.Column("severity", sa.String(length=16), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("raised_at", shared.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("last_value", sa.Float(), nullable=True),
        sa.Column("last_at", shared.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("cleared_at", shared.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("clear_value", sa.Float(), nullable=True),
        sa.Column("clear_reason", sa.String(length=16), nullable=True),
        sa.ForeignKeyConstraint(
            ["sensor_id"],
            ["sensors.id"],
            name=op.f("fk_sensor_alarms_sensor_id_sensors"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sensor_alarms")),
        sa.UniqueConstraint("ref", name=op.f("uq_sensor_alarms_ref")),
    )
    with op.batch_alter_table("sensor_alarms", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sensor_alarms_event_id"), ["event_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_sensor_alarms_sensor_id"), ["sensor_id"], unique=False)
        batch_op.create_index(
            "uq_sensor_alarms_open",
            ["sensor_id", "rule_key"],
            unique=True,
            sqlite_where=sa.text("cleared_at IS NULL"),
            postgresql_where=sa.text("cleared_at IS NULL"),
        )

    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("mqtt_password_hash", sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_column("mqtt_password_hash")

    with op.batch_alter_table("sensor_alarms", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_sensor_alarms_open",
            sqlite_where=sa.text("cleared_at IS NULL"),
            postgresql_where=sa.text("cleared_at IS NULL"),
        )
        batch_op.drop_index(batch_op.f("ix_sensor_alarms_sensor_id"))
        batch_op.drop_index(batch_op.f("ix_sensor_alarms_event_id"))

    op.drop_table("sensor_alarms")
    with op.batch_alter_table("sensors", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sensors_updated_at"))
        batch_op.drop_index(batch_op.f("ix_sensors_integrator"))

    op.drop_table("sensors")
    with op.batch_alter_table("dead_letters", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_dead_letters_received_at"))
        batch_op.drop_index(batch_op.f("ix_dead_letters_reason"))
        batch_op.drop_index(batch_op.f("ix_dead_letters_integrator"))

    op.drop_table("dead_letters")
