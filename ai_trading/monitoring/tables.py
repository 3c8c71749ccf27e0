"""Tables of the monitoring floor (rows, not domain types): the alert outbox, the per-dedup-key alert state and
the kill switch's append-only log. Created only by the migrations (``0010_alerts_outbox``, ``0011_kill_switch``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, CheckConstraint, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ai_trading.oms.db import Base
from ai_trading.oms.tables import UtcDateTime

OUTBOX_STATUSES = ("pending", "sending", "delivered", "failed")


class AlertOutboxRow(Base):
    """One alert notification owed to one sink. Written in the same transaction that accepts the alert, so a
    crash after ``raise`` cannot lose it; ``sending`` rows whose lease ran out are taken again (at least once)."""

    __tablename__ = "alert_outbox"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'sending', 'delivered', 'failed')", name="status"),
        CheckConstraint("state IN ('fired', 'resolved')", name="state"),
        Index("ix_alert_outbox_status_next_attempt_at", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    sink: Mapped[str] = mapped_column(String(64))
    rule: Mapped[str] = mapped_column(String(128))
    dedup_key: Mapped[str] = mapped_column(String(256))
    severity: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16))
    alert: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime())
    lease_until: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    delivered_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    message_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)


class AlertStateRow(Base):
    """The last accepted state of one dedup key: decides repeats (inside the repeat interval: not sent again)
    and resolves (sent once, only for a key that fired)."""

    __tablename__ = "alert_states"
    __table_args__ = (CheckConstraint("state IN ('fired', 'resolved')", name="state"),)

    dedup_key: Mapped[str] = mapped_column(String(256), primary_key=True)
    rule: Mapped[str] = mapped_column(String(128))
    state: Mapped[str] = mapped_column(String(16))
    last_seen_at: Mapped[datetime] = mapped_column(UtcDateTime())
    last_sent_at: Mapped[datetime] = mapped_column(UtcDateTime())
    suppressed: Mapped[int] = mapped_column(Integer)


class KillSwitchEventRow(Base):
    """The kill switch's append-only log; the newest row is the current state."""

    __tablename__ = "kill_switch_events"
    __table_args__ = (
        CheckConstraint("action IN ('engage', 'release')", name="action"),
        CheckConstraint("mode IN ('block_all', 'reduce_only')", name="mode"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    action: Mapped[str] = mapped_column(String(16))
    mode: Mapped[str | None] = mapped_column(String(16), nullable=True)  # None on release
    who: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UtcDateTime())
