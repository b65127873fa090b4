"""Alerts: breaches, supervision orders, escalations, emergency switches, sensors offline, dead-letter spikes.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-29 19:40:00
"""

from collections.abc import Sequence

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
