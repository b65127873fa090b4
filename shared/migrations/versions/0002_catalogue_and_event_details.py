"""Category catalogue table; reporter, attachments and attributes on events.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21 07:45:28.435109
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import shared.db.types

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "categories",
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("definition", sa.JSON(), nullable=False),
        sa.Column("updated_at", shared.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_categories")),
    )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reporter", sa.JSON(), nullable=True))
        batch_op.add_column(
            sa.Column("attachments", sa.JSON(), nullable=False, server_default=sa.text("'[]'"))
        )
        batch_op.add_column(
            sa.Column("attributes", sa.JSON(), nullable=False, server_default=sa.text("'{}'"))
        )


def downgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_column("attributes")
        batch_op.drop_column("attachments")
        batch_op.drop_column("reporter")

    op.drop_table("categories")
