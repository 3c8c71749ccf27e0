"""The broker protocol: what the OMS may ask of a venue, in the venue's own terms.

A venue knows orders by the client order id the OMS gave them (the broker-safe form of the CIDv2) and
enforces that id's uniqueness, as real brokers do. These types are the broker's view; the OMS maps them
onto its intents and events.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol, runtime_checkable

from ai_trading.errors import AiTradingError
from ai_trading.oms.models import OrderType, Side


class BrokerOrderStatus(StrEnum):
    NEW = "new"  # accepted by the venue, nothing filled yet
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELED = "canceled"
    REJECTED = "rejected"

    @property
    def is_open(self) -> bool:
        return self in (BrokerOrderStatus.NEW, BrokerOrderStatus.PARTIALLY_FILLED)


@dataclass(frozen=True)
class OrderRequest:
    client_order_id: str
    symbol: str
    side: Side
    quantity: float
    order_type: OrderType = OrderType.MARKET
    limit_price: float | None = None


@dataclass(frozen=True)
class BrokerOrder:
    client_order_id: str
    broker_order_id: str
    symbol: str
    side: Side
    quantity: float
    order_type: OrderType
    limit_price: float | None
    status: BrokerOrderStatus
    filled_quantity: float
    average_price: float | None
    submitted_at: datetime
    reject_reason: str | None = None


@dataclass(frozen=True)
class BrokerFill:
    trade_id: str
    broker_order_id: str
    client_order_id: str
    symbol: str
    side: Side
    quantity: float
    price: float
    fee: float
    timestamp: datetime


class BrokerError(AiTradingError):
    """A venue refused or failed a request."""


class BrokerUnavailable(BrokerError):
    """The request's outcome is unknown (timeout, 5xx, lost connection): look the order up before resending."""


class DuplicateClientOrderId(BrokerError):
    """The venue already holds an order with this client order id; nothing new was created."""

    def __init__(self, client_order_id: str) -> None:
        self.client_order_id = client_order_id
        super().__init__(f"the venue already holds an order with client order id {client_order_id!r}")


class UnknownOrder(BrokerError):
    """The venue holds no order with this client order id."""

    def __init__(self, client_order_id: str) -> None:
        self.client_order_id = client_order_id
        super().__init__(f"the venue holds no order with client order id {client_order_id!r}")


@runtime_checkable
class Broker(Protocol):
    """A venue. Every method either returns the venue's answer or raises a ``BrokerError``."""

    def submit(self, request: OrderRequest) -> BrokerOrder:
        """Send a new order; ``DuplicateClientOrderId`` when its id exists, ``BrokerUnavailable`` when unknown."""
        ...

    def cancel(self, client_order_id: str) -> BrokerOrder:
        """Cancel an open order; returns its state after the cancel (a filled order stays filled)."""
        ...

    def get_order(self, client_order_id: str) -> BrokerOrder | None:
        """The order with this client order id, or None when the venue never received it."""
        ...

    def list_open_orders(self) -> list[BrokerOrder]:
        """Every order not in a final state, ours or not."""
        ...

    def list_fills(self, since: datetime | None = None) -> list[BrokerFill]:
        """Fills with ``timestamp >= since`` (all when None), oldest first; a trade id appears once."""
        ...
