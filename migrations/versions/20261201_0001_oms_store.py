"""OMS store: intents with their current state, the append-only event log, fills, reconciliation runs.

Revision ID: 0001_oms_store
Revises:
Create Date: 2026-12-01 00:16:22

Written out in full (no application imports) so the revision keeps creating exactly this schema when
the models move on. Constraint names follow ``ai_trading.oms.db.NAMING_CONVENTION``.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001_oms_store"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_STATES = "'CREATED', 'SUBMITTED', 'ACKED', 'PARTIAL_FILLED', 'FILLED', 'CANCELED', 'REJECTED'"


def _qty() -> sa.Numeric:
    return sa.Numeric(precision=28, scale=8)


def _ts() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "oms_intents",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("client_order_id", sa.String(length=400), nullable=False),
        sa.Column("broker_safe_id", sa.String(length=64), nullable=False),
        sa.Column("strategy", sa.String(length=64), nullable=False),
        sa.Column("symbol", sa.String(length=64), nullable=False),
        sa.Column("side", sa.String(length=4), nullable=False),
        sa.Column("quantity", _qty(), nullable=False),
        sa.Column("order_type", sa.String(length=16), nullable=False),
        sa.Column("limit_price", _qty(), nullable=True),
        sa.Column("session", sa.String(length=64), nullable=False),
        sa.Column("horizon", sa.String(length=64), nullable=False),
        sa.Column("signal_hash", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("filled_quantity", _qty(), nullable=False),
        sa.Column("fees", _qty(), nullable=False),
        sa.Column("broker_order_id", sa.String(length=128), nullable=True),
        sa.Column("last_sequence", sa.Integer(), nullable=False),
        sa.Column("updated_at", _ts(), nullable=False),
        sa.CheckConstraint("side IN ('buy', 'sell')", name=op.f("ck_oms_intents_side")),
        sa.CheckConstraint(f"state IN ({_STATES})", name=op.f("ck_oms_intents_state")),
        sa.CheckConstraint("filled_quantity >= 0 AND filled_quantity <= quantity",
                           name=op.f("ck_oms_intents_no_overfill")),
        sa.CheckConstraint("quantity > 0", name=op.f("ck_oms_intents_quantity_positive")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_oms_intents")),
        sa.UniqueConstraint("broker_safe_id", name=op.f("uq_oms_intents_broker_safe_id")),
        sa.UniqueConstraint("client_order_id", name=op.f("uq_oms_intents_client_order_id")),
    )
    op.create_index("ix_oms_intents_state", "oms_intents", ["state"], unique=False)
    op.create_table(
        "oms_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("intent_id", sa.Integer(), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("recorded_at", _ts(), nullable=False),
        sa.ForeignKeyConstraint(["intent_id"], ["oms_intents.id"], name=op.f("fk_oms_events_intent_id_oms_intents"),
                                ondelete="RESTRICT"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_oms_events")),
        sa.UniqueConstraint("intent_id", "sequence", name=op.f("uq_oms_events_intent_id_sequence")),
    )
    op.create_table(
        "oms_fills",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("intent_id", sa.Integer(), nullable=False),
        sa.Column("trade_id", sa.String(length=128), nullable=False),
        sa.Column("quantity", _qty(), nullable=False),
        sa.Column("price", _qty(), nullable=False),
        sa.Column("fee", _qty(), nullable=False),
        sa.Column("timestamp", _ts(), nullable=False),
        sa.ForeignKeyConstraint(["intent_id"], ["oms_intents.id"], name=op.f("fk_oms_fills_intent_id_oms_intents"),
                                ondelete="RESTRICT"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_oms_fills")),
        sa.UniqueConstraint("trade_id", name=op.f("uq_oms_fills_trade_id")),
    )
    op.create_index("ix_oms_fills_intent_id", "oms_fills", ["intent_id"], unique=False)
    op.create_table(
        "oms_reconciliations",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("started_at", _ts(), nullable=False),
        sa.Column("finished_at", _ts(), nullable=False),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("counts", sa.JSON(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_oms_reconciliations")),
    )


def downgrade() -> None:
    op.drop_table("oms_reconciliations")
    op.drop_index("ix_oms_fills_intent_id", table_name="oms_fills")
    op.drop_table("oms_fills")
    op.drop_table("oms_events")
    op.drop_index("ix_oms_intents_state", table_name="oms_intents")
    op.drop_table("oms_intents")
