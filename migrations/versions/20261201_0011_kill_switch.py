"""The kill switch: an append-only log of engage/release with who, why and when; the newest row is the state.

Revision ID: 0011_kill_switch
Revises: 0010_alerts_outbox
Create Date: 2026-12-01

Written out in full (no application imports). Constraint names follow ``ai_trading.oms.db.NAMING_CONVENTION``.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_kill_switch"
down_revision: str | Sequence[str] | None = "0010_alerts_outbox"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "kill_switch_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=True),
        sa.Column("who", sa.String(length=128), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("action IN ('engage', 'release')", name=op.f("ck_kill_switch_events_action")),
        sa.CheckConstraint("mode IN ('block_all', 'reduce_only')", name=op.f("ck_kill_switch_events_mode")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_kill_switch_events")),
    )


def downgrade() -> None:
    op.drop_table("kill_switch_events")
