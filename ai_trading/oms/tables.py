"""The OMS store's tables (rows, not domain types): intents with their current state, the append-only
event log, fills and reconciliation runs. Created only by the migrations (``0001_oms_store``)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Mapped, mapped_column

from ai_trading.oms.db import Base

QTY = Numeric(28, 8)  # models.DECIMAL_PLACES places, exact on PostgreSQL and through SQLite's REAL


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in and out: SQLite stores no offset, so naive values read back are UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r} given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


_STATES = "'CREATED', 'SUBMITTED', 'ACKED', 'PARTIAL_FILLED', 'FILLED', 'CANCELED', 'REJECTED'"


class IntentRow(Base):
    """One order intent: its immutable content and ids, and its current state (kept in step with the event
    log in the same transaction; ``last_sequence`` is the compare-and-set guard)."""

    __tablename__ = "oms_intents"
    __table_args__ = (
        CheckConstraint(f"state IN ({_STATES})", name="state"),
        CheckConstraint("side IN ('buy', 'sell')", name="side"),
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint("filled_quantity >= 0 AND filled_quantity <= quantity", name="no_overfill"),
        Index("ix_oms_intents_state", "state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    client_order_id: Mapped[str] = mapped_column(String(400), unique=True)
    broker_safe_id: Mapped[str] = mapped_column(String(64), unique=True)
    strategy: Mapped[str] = mapped_column(String(64))
    symbol: Mapped[str] = mapped_column(String(64))
    side: Mapped[str] = mapped_column(String(4))
    quantity: Mapped[Decimal] = mapped_column(QTY)
    order_type: Mapped[str] = mapped_column(String(16))
    limit_price: Mapped[Decimal | None] = mapped_column(QTY, nullable=True)
    session: Mapped[str] = mapped_column(String(64))
    horizon: Mapped[str] = mapped_column(String(64))
    signal_hash: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    state: Mapped[str] = mapped_column(String(16))
    filled_quantity: Mapped[Decimal] = mapped_column(QTY)
    fees: Mapped[Decimal] = mapped_column(QTY)
    broker_order_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    last_sequence: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class EventRow(Base):
    """The append-only event log: one row per applied event, numbered 1, 2, ... per intent."""

    __tablename__ = "oms_events"
    __table_args__ = (UniqueConstraint("intent_id", "sequence"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    intent_id: Mapped[int] = mapped_column(ForeignKey("oms_intents.id", ondelete="RESTRICT"))
    sequence: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime())


class FillRow(Base):
    """Executions, one per broker trade id (the unique constraint makes a redelivered fill count once)."""

    __tablename__ = "oms_fills"
    __table_args__ = (Index("ix_oms_fills_intent_id", "intent_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    intent_id: Mapped[int] = mapped_column(ForeignKey("oms_intents.id", ondelete="RESTRICT"))
    trade_id: Mapped[str] = mapped_column(String(128), unique=True)
    quantity: Mapped[Decimal] = mapped_column(QTY)
    price: Mapped[Decimal] = mapped_column(QTY)
    fee: Mapped[Decimal] = mapped_column(QTY)
    timestamp: Mapped[datetime] = mapped_column(UtcDateTime())


class ReconciliationRow(Base):
    """One reconciliation run against a broker: when, how it ended and what it counted."""

    __tablename__ = "oms_reconciliations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime())
    finished_at: Mapped[datetime] = mapped_column(UtcDateTime())
    outcome: Mapped[str] = mapped_column(String(32))
    counts: Mapped[dict[str, Any]] = mapped_column(JSON)
    detail: Mapped[str | None] = mapped_column(Text, nullable=True)
