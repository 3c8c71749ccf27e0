"""The paper venue's tables: its clock, orders (unique client and broker order ids) and fills.

Revision ID: 0002_paper_venue
Revises:
Create Date: 2026-12-01

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_paper_venue"
down_revision: str | Sequence[str] | None = "0001_oms_store"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "paper_venue",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("market_fingerprint", sa.String(length=64), nullable=False),
        sa.Column("cursor", sa.Integer(), nullable=False),
        sa.Column("cursor_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_paper_venue")),
    )
    op.create_table(
        "paper_orders",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("client_order_id", sa.String(length=128), nullable=False),
        sa.Column("broker_order_id", sa.String(length=64), nullable=False),
        sa.Column("symbol", sa.String(length=32), nullable=False),
        sa.Column("side", sa.String(length=8), nullable=False),
        sa.Column("quantity", sa.Double(), nullable=False),
        sa.Column("order_type", sa.String(length=8), nullable=False),
        sa.Column("limit_price", sa.Double(), nullable=True),
        sa.Column("time_in_force", sa.String(length=8), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("filled_quantity", sa.Double(), nullable=False),
        sa.Column("filled_notional", sa.Double(), nullable=False),
        sa.Column("submitted_bar", sa.Integer(), nullable=False),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("first_bar", sa.Integer(), nullable=True),
        sa.Column("last_bar", sa.Integer(), nullable=True),
        sa.Column("reject_reason", sa.Text(), nullable=True),
        sa.Column("external", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_paper_orders")),
        sa.UniqueConstraint("broker_order_id", name=op.f("uq_paper_orders_broker_order_id")),
        sa.UniqueConstraint("client_order_id", name=op.f("uq_paper_orders_client_order_id")),
    )
    with op.batch_alter_table("paper_orders", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_paper_orders_status"), ["status"], unique=False)
    op.create_table(
        "paper_fills",
        sa.Column("trade_id", sa.String(length=80), nullable=False),
        sa.Column("order_seq", sa.Integer(), nullable=False),
        sa.Column("bar", sa.Integer(), nullable=False),
        sa.Column("timestamp", sa.DateTime(timezone=True), nullable=False),
        sa.Column("quantity", sa.Double(), nullable=False),
        sa.Column("price", sa.Double(), nullable=False),
        sa.Column("fee", sa.Double(), nullable=False),
        sa.Column("reference_price", sa.Double(), nullable=False),
        sa.Column("spread_cost", sa.Double(), nullable=False),
        sa.Column("impact_cost", sa.Double(), nullable=False),
        sa.Column("liquidity", sa.String(length=8), nullable=False),
        sa.ForeignKeyConstraint(["order_seq"], ["paper_orders.seq"],
                                name=op.f("fk_paper_fills_order_seq_paper_orders")),
        sa.PrimaryKeyConstraint("trade_id", name=op.f("pk_paper_fills")),
    )
    with op.batch_alter_table("paper_fills", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_paper_fills_bar"), ["bar"], unique=False)
        batch_op.create_index(batch_op.f("ix_paper_fills_order_seq"), ["order_seq"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("paper_fills", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_paper_fills_order_seq"))
        batch_op.drop_index(batch_op.f("ix_paper_fills_bar"))
    op.drop_table("paper_fills")
    with op.batch_alter_table("paper_orders", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_paper_orders_status"))
    op.drop_table("paper_orders")
    op.drop_table("paper_venue")
