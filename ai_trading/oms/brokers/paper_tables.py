"""Tables of the paper venue's own database (``paper_*``): the venue's clock, its orders and its fills.

Quantities and prices are double precision, not ``Numeric``: the venue's fills are the simulator's floats
and a restarted venue must resume from exactly the filled quantity it stopped at (a decimal round trip
would change the last bits and so the next fills). Times are kept as bar indices of the venue's market
(exact, and what the fill rule works on) beside tz-aware timestamps for people reading the tables.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, DateTime, Double, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ai_trading.oms.db import Base


class PaperVenueRow(Base):
    """The venue itself (one row): what market it runs on and the last bar it processed."""

    __tablename__ = "paper_venue"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    # sha256 of the bars, the simulator preset and the seed: a restart on other inputs is refused
    market_fingerprint: Mapped[str] = mapped_column(String(64), nullable=False)
    cursor: Mapped[int] = mapped_column(Integer, nullable=False)  # last bar processed (row of the market)
    cursor_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class PaperOrderRow(Base):
    """An order the venue holds; ``seq`` is its arrival order (the priority between equal submission times)."""

    __tablename__ = "paper_orders"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    client_order_id: Mapped[str] = mapped_column(String(128), nullable=False, unique=True)
    broker_order_id: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    symbol: Mapped[str] = mapped_column(String(32), nullable=False)
    side: Mapped[str] = mapped_column(String(8), nullable=False)
    quantity: Mapped[float] = mapped_column(Double, nullable=False)
    order_type: Mapped[str] = mapped_column(String(8), nullable=False)
    limit_price: Mapped[float | None] = mapped_column(Double, nullable=True)
    time_in_force: Mapped[str] = mapped_column(String(8), nullable=False)
    status: Mapped[str] = mapped_column(String(20), nullable=False, index=True)
    filled_quantity: Mapped[float] = mapped_column(Double, nullable=False)
    filled_notional: Mapped[float] = mapped_column(Double, nullable=False)
    submitted_bar: Mapped[int] = mapped_column(Integer, nullable=False)
    submitted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    first_bar: Mapped[int | None] = mapped_column(Integer, nullable=True)  # None: rejected
    last_bar: Mapped[int | None] = mapped_column(Integer, nullable=True)
    reject_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    external: Mapped[bool] = mapped_column(Boolean, nullable=False)  # placed on the venue, not through the OMS


class PaperFillRow(Base):
    """One fill: one order's slice on one bar (so ``trade_id`` = broker order id and bar)."""

    __tablename__ = "paper_fills"

    trade_id: Mapped[str] = mapped_column(String(80), primary_key=True)
    order_seq: Mapped[int] = mapped_column(ForeignKey("paper_orders.seq"), nullable=False, index=True)
    bar: Mapped[int] = mapped_column(Integer, nullable=False, index=True)
    timestamp: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    quantity: Mapped[float] = mapped_column(Double, nullable=False)
    price: Mapped[float] = mapped_column(Double, nullable=False)
    fee: Mapped[float] = mapped_column(Double, nullable=False)
    reference_price: Mapped[float] = mapped_column(Double, nullable=False)
    spread_cost: Mapped[float] = mapped_column(Double, nullable=False)
    impact_cost: Mapped[float] = mapped_column(Double, nullable=False)
    liquidity: Mapped[str] = mapped_column(String(8), nullable=False)
