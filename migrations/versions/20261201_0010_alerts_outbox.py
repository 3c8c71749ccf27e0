"""Alerts: the outbox of notifications owed to each sink and the per-dedup-key alert state.

Revision ID: 0010_alerts_outbox
Revises: 0002_paper_venue
Create Date: 2026-12-01

Written out in full (no application imports). Constraint names follow ``ai_trading.oms.db.NAMING_CONVENTION``.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_alerts_outbox"
down_revision: str | Sequence[str] | None = "0002_paper_venue"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ts() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "alert_outbox",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("sink", sa.String(length=64), nullable=False),
        sa.Column("rule", sa.String(length=128), nullable=False),
        sa.Column("dedup_key", sa.String(length=256), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("alert", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("next_attempt_at", _ts(), nullable=False),
        sa.Column("lease_until", _ts(), nullable=True),
        sa.Column("delivered_at", _ts(), nullable=True),
        sa.Column("message_id", sa.String(length=64), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.CheckConstraint("status IN ('pending', 'sending', 'delivered', 'failed')",
                           name=op.f("ck_alert_outbox_status")),
        sa.CheckConstraint("state IN ('fired', 'resolved')", name=op.f("ck_alert_outbox_state")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_outbox")),
    )
    op.create_index("ix_alert_outbox_status_next_attempt_at", "alert_outbox", ["status", "next_attempt_at"],
                    unique=False)
    op.create_table(
        "alert_states",
        sa.Column("dedup_key", sa.String(length=256), nullable=False),
        sa.Column("rule", sa.String(length=128), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("last_seen_at", _ts(), nullable=False),
        sa.Column("last_sent_at", _ts(), nullable=False),
        sa.Column("suppressed", sa.Integer(), nullable=False),
        sa.CheckConstraint("state IN ('fired', 'resolved')", name=op.f("ck_alert_states_state")),
        sa.PrimaryKeyConstraint("dedup_key", name=op.f("pk_alert_states")),
    )


def downgrade() -> None:
    op.drop_table("alert_states")
    op.drop_index("ix_alert_outbox_status_next_attempt_at", table_name="alert_outbox")
    op.drop_table("alert_outbox")
