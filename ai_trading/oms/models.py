"""Order-management domain types: the vocabulary every OMS module and broker shares.

Pure and immutable: no SQLAlchemy, no I/O.

An order's life is the state machine

    CREATED -> SUBMITTED -> ACKED -> PARTIAL_FILLED* -> FILLED | CANCELED | REJECTED

written out as ``TRANSITIONS``, a table of allowed ``(state, event kind) -> state``. ``apply`` is the one
function that moves a snapshot by an event; the store uses it for every transition and ``replay`` uses it
to rebuild a snapshot from the event log, so both always agree. Its rules:

- A pair missing from the table raises ``IllegalTransition`` naming the order, the state and the event.
- Terminal states (FILLED, CANCELED, REJECTED) are final: every event on them raises, except a fill whose
  trade id is already known, which is a no-op (so a fill redelivered after the order filled is harmless).
- A fill is applied once per broker trade id: a known trade id returns the snapshot unchanged (the same
  object; callers write nothing).
- A fill that would take the filled quantity past the ordered quantity raises ``Overfill``.
- A fill for a SUBMITTED order (its ack not yet seen) is adopted: a fill proves the venue accepted the
  order, so the order moves straight to PARTIAL_FILLED or FILLED and takes the fill's broker order id.
  Brokers' streams do deliver a fill before its ack, and refusing it would lose a real execution.
- An ack arriving after the order was acked or partly filled (a duplicate or a late ack) is a no-op when
  it names the same broker order id, and raises ``IllegalTransition`` when it names another; when the
  order had no broker order id yet (it was adopted from a fill that named none), the ack records it.
- A fill moves the order to PARTIAL_FILLED, or to FILLED when it completes the quantity.

Quantities, prices and fees are ``Decimal`` with at most ``DECIMAL_PLACES`` places, so overfill checks
and the database's ``Numeric`` columns are exact on every backend; floats are taken through their
shortest repr (10.0 and 10 are the same quantity), never silently rounded.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from ai_trading.errors import IllegalTransition, OrderValidationError, Overfill

DECIMAL_PLACES = 8
_QUANTUM = Decimal(1).scaleb(-DECIMAL_PLACES)
_INTEGER_DIGITS = 20  # the store's Numeric(28, 8)
_LIMIT = Decimal(10) ** _INTEGER_DIGITS


class Side(StrEnum):
    BUY = "buy"
    SELL = "sell"


class OrderType(StrEnum):
    MARKET = "market"
    LIMIT = "limit"


class OrderState(StrEnum):
    CREATED = "CREATED"
    SUBMITTED = "SUBMITTED"
    ACKED = "ACKED"
    PARTIAL_FILLED = "PARTIAL_FILLED"
    FILLED = "FILLED"
    CANCELED = "CANCELED"
    REJECTED = "REJECTED"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset({OrderState.FILLED, OrderState.CANCELED, OrderState.REJECTED})
OPEN_STATES = frozenset(set(OrderState) - TERMINAL_STATES)


class EventKind(StrEnum):
    """What happened to an order (past tense): the OMS submitted it, the venue acked, filled, canceled or
    rejected it."""

    SUBMITTED = "SUBMITTED"
    ACKED = "ACKED"
    FILLED = "FILLED"  # one execution (a partial or the completing fill)
    CANCELED = "CANCELED"
    REJECTED = "REJECTED"


S, E = OrderState, EventKind
# A FILLED event leads to PARTIAL_FILLED here; ``apply`` completes it to FILLED when the fill reaches the
# ordered quantity.
TRANSITIONS: Mapping[tuple[OrderState, EventKind], OrderState] = MappingProxyType({
    (S.CREATED, E.SUBMITTED): S.SUBMITTED,
    (S.CREATED, E.CANCELED): S.CANCELED,  # withdrawn before it was sent
    (S.CREATED, E.REJECTED): S.REJECTED,  # refused before it was sent (a pre-trade check)
    (S.SUBMITTED, E.ACKED): S.ACKED,
    (S.SUBMITTED, E.FILLED): S.PARTIAL_FILLED,  # a fill implies the ack
    (S.SUBMITTED, E.CANCELED): S.CANCELED,
    (S.SUBMITTED, E.REJECTED): S.REJECTED,
    (S.ACKED, E.FILLED): S.PARTIAL_FILLED,
    (S.ACKED, E.CANCELED): S.CANCELED,
    (S.ACKED, E.REJECTED): S.REJECTED,
    (S.PARTIAL_FILLED, E.FILLED): S.PARTIAL_FILLED,
    (S.PARTIAL_FILLED, E.CANCELED): S.CANCELED,  # the rest is canceled; the fills stand
})
# Duplicate or late acks: absorbed without a state change (see the module docstring).
_ACK_ABSORBED = frozenset({S.ACKED, S.PARTIAL_FILLED})
del S, E


def to_decimal(value: Any, what: str, *, positive: bool = True, allow_zero: bool = False) -> Decimal:
    """``value`` as an exact ``Decimal`` with at most ``DECIMAL_PLACES`` places, or ``OrderValidationError``."""
    if isinstance(value, bool):
        raise OrderValidationError(f"{what}={value!r}: a number, not a bool")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise OrderValidationError(f"{what}={value!r}: must be finite")
        value = repr(value)  # the shortest repr: 0.1 stays 0.1, not its binary expansion
    try:
        number = Decimal(value) if isinstance(value, (int, str, Decimal)) else None
    except InvalidOperation:
        number = None
    if number is None or not number.is_finite():
        raise OrderValidationError(f"{what}={value!r}: not a finite number")
    if abs(number) >= _LIMIT:
        raise OrderValidationError(f"{what}={value!r}: at most {_INTEGER_DIGITS} digits before the point")
    if number != number.quantize(_QUANTUM, rounding="ROUND_DOWN"):
        raise OrderValidationError(f"{what}={value!r}: more than {DECIMAL_PLACES} decimal places")
    if positive and (number < 0 or (number == 0 and not allow_zero)):
        raise OrderValidationError(f"{what}={value!r}: must be {'>= 0' if allow_zero else '> 0'}")
    return number + 0  # drops a negative zero's sign


def _aware(ts: datetime, what: str) -> datetime:
    if not isinstance(ts, datetime) or ts.tzinfo is None or ts.utcoffset() is None:
        raise OrderValidationError(f"{what}={ts!r}: a timezone-aware datetime")
    return ts.astimezone(UTC)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class OrderIntent:
    """What a strategy wants traded, fixed at creation. ``client_order_id`` (CIDv2) and ``broker_safe_id``
    are derived from the content (``ai_trading.oms.idempotency``), so the same intent has the same ids in
    any process; ``broker_order_id`` is the venue's id once known (filled in by the store)."""

    strategy: str
    symbol: str
    side: Side
    quantity: Decimal
    session: str
    horizon: str
    signal_hash: str
    version: int = 1
    order_type: OrderType = OrderType.MARKET
    limit_price: Decimal | None = None
    created_at: datetime = field(default_factory=utc_now)
    broker_order_id: str | None = None
    client_order_id: str = field(init=False)
    broker_safe_id: str = field(init=False)

    def __post_init__(self) -> None:
        from ai_trading.oms.idempotency import broker_safe_id, make_cid

        try:
            side = Side(self.side)
            order_type = OrderType(self.order_type)
        except ValueError as exc:
            raise OrderValidationError(f"intent {self.strategy}/{self.symbol}: {exc}") from None
        quantity = to_decimal(self.quantity, "quantity")
        limit = None if self.limit_price is None else to_decimal(self.limit_price, "limit_price")
        if (order_type is OrderType.LIMIT) != (limit is not None):
            raise OrderValidationError(f"intent {self.strategy}/{self.symbol}: a limit order needs a limit_price "
                                       f"and a market order none (order_type={order_type}, limit_price={limit})")
        setattr_ = object.__setattr__
        setattr_(self, "side", side)
        setattr_(self, "order_type", order_type)
        setattr_(self, "quantity", quantity)
        setattr_(self, "limit_price", limit)
        setattr_(self, "created_at", _aware(self.created_at, "created_at"))
        cid = make_cid(strategy=self.strategy, symbol=self.symbol, side=side, session=self.session,
                       horizon=self.horizon, signal_hash=self.signal_hash, quantity=quantity, version=self.version)
        setattr_(self, "client_order_id", cid)
        setattr_(self, "broker_safe_id", broker_safe_id(cid))


@dataclass(frozen=True)
class Fill:
    """One execution reported by the venue, identified by its trade id."""

    trade_id: str
    quantity: Decimal
    price: Decimal
    fee: Decimal
    timestamp: datetime

    def __post_init__(self) -> None:
        if not isinstance(self.trade_id, str) or not self.trade_id:
            raise OrderValidationError(f"fill trade_id={self.trade_id!r}: a non-empty string")
        object.__setattr__(self, "quantity", to_decimal(self.quantity, f"fill {self.trade_id} quantity"))
        object.__setattr__(self, "price", to_decimal(self.price, f"fill {self.trade_id} price"))
        object.__setattr__(self, "fee", to_decimal(self.fee, f"fill {self.trade_id} fee", positive=False))
        object.__setattr__(self, "timestamp", _aware(self.timestamp, f"fill {self.trade_id} timestamp"))

    def to_payload(self) -> dict[str, str]:
        return {"trade_id": self.trade_id, "quantity": str(self.quantity), "price": str(self.price),
                "fee": str(self.fee), "timestamp": self.timestamp.isoformat()}

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> Fill:
        return cls(trade_id=payload["trade_id"], quantity=Decimal(payload["quantity"]),
                   price=Decimal(payload["price"]), fee=Decimal(payload["fee"]),
                   timestamp=datetime.fromisoformat(payload["timestamp"]))


@dataclass(frozen=True)
class OrderEvent:
    """One entry of an order's event log. ``payload`` holds JSON-ready strings: ``broker_order_id`` for
    ACKED (and optionally FILLED), the fill's fields for FILLED, ``reason`` for CANCELED and REJECTED.
    ``sequence`` is the event's 1-based position in the order's log (None until the store assigns it)."""

    kind: EventKind
    payload: Mapping[str, Any] = field(default_factory=dict)
    sequence: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", EventKind(self.kind))
        object.__setattr__(self, "payload", MappingProxyType(dict(self.payload)))

    @classmethod
    def submitted(cls) -> OrderEvent:
        return cls(EventKind.SUBMITTED)

    @classmethod
    def acked(cls, broker_order_id: str) -> OrderEvent:
        return cls(EventKind.ACKED, {"broker_order_id": broker_order_id})

    @classmethod
    def filled(cls, fill: Fill, broker_order_id: str | None = None) -> OrderEvent:
        payload: dict[str, Any] = fill.to_payload()
        if broker_order_id is not None:
            payload["broker_order_id"] = broker_order_id
        return cls(EventKind.FILLED, payload)

    @classmethod
    def canceled(cls, reason: str = "") -> OrderEvent:
        return cls(EventKind.CANCELED, {"reason": reason})

    @classmethod
    def rejected(cls, reason: str = "") -> OrderEvent:
        return cls(EventKind.REJECTED, {"reason": reason})

    @property
    def fill(self) -> Fill:
        if self.kind is not EventKind.FILLED:
            raise IllegalTransition(f"event {self.kind} carries no fill")
        return Fill.from_payload(self.payload)


@dataclass(frozen=True)
class OrderSnapshot:
    """An order's current state: what ``apply`` folds the event log into. (Prices live on the fills; an
    average price is computed from them, so no rounded running notional is stored.)"""

    client_order_id: str
    quantity: Decimal
    state: OrderState = OrderState.CREATED
    filled_quantity: Decimal = Decimal(0)
    fees: Decimal = Decimal(0)
    broker_order_id: str | None = None
    trade_ids: frozenset[str] = frozenset()
    sequence: int = 0  # events applied so far

    @classmethod
    def initial(cls, intent: OrderIntent) -> OrderSnapshot:
        """The snapshot before any event: CREATED, nothing filled, no broker order id (the ack brings it)."""
        return cls(client_order_id=intent.client_order_id, quantity=intent.quantity)

    @property
    def remaining(self) -> Decimal:
        return self.quantity - self.filled_quantity

    @property
    def is_terminal(self) -> bool:
        return self.state.is_terminal


def apply(snapshot: OrderSnapshot, event: OrderEvent) -> OrderSnapshot:
    """The snapshot after ``event``; the same object when the event is a no-op (a known trade id, a
    duplicate ack). Raises ``IllegalTransition`` (``Overfill`` for a fill past the quantity) otherwise."""
    cid, state, kind = snapshot.client_order_id, snapshot.state, event.kind
    fill = event.fill if kind is EventKind.FILLED else None
    if fill is not None and fill.trade_id in snapshot.trade_ids:
        return snapshot
    if event.sequence is not None and event.sequence != snapshot.sequence + 1:
        raise IllegalTransition(f"order {cid}: event {kind} has sequence {event.sequence}, expected "
                                f"{snapshot.sequence + 1} (state {state})")
    broker_id = event.payload.get("broker_order_id")
    if broker_id is not None and snapshot.broker_order_id is not None and broker_id != snapshot.broker_order_id:
        raise IllegalTransition(f"order {cid} in state {state}: event {kind} names broker order {broker_id!r}, "
                                f"the order is {snapshot.broker_order_id!r}")
    if kind is EventKind.ACKED and state in _ACK_ABSORBED:
        if broker_id is None or snapshot.broker_order_id is not None:
            return snapshot
        # a late ack after a fill that named no broker order: keep the id it brings
        return replace(snapshot, broker_order_id=broker_id, sequence=snapshot.sequence + 1)
    target = TRANSITIONS.get((state, kind))
    if target is None:
        final = " (a terminal state is final)" if state.is_terminal else ""
        raise IllegalTransition(f"order {cid}: event {kind} is not allowed in state {state}{final}")
    if kind is EventKind.ACKED and broker_id is None:
        raise IllegalTransition(f"order {cid} in state {state}: ACKED event without a broker_order_id")
    changes: dict[str, Any] = {"state": target, "sequence": snapshot.sequence + 1}
    if broker_id is not None:
        changes["broker_order_id"] = broker_id
    if fill is not None:
        filled = snapshot.filled_quantity + fill.quantity
        if filled > snapshot.quantity:
            raise Overfill(f"order {cid} in state {state}: fill {fill.trade_id} of {fill.quantity} would fill "
                           f"{filled} of {snapshot.quantity}")
        changes.update(filled_quantity=filled, fees=snapshot.fees + fill.fee,
                       trade_ids=snapshot.trade_ids | {fill.trade_id})
        if filled == snapshot.quantity:
            changes["state"] = OrderState.FILLED
    return replace(snapshot, **changes)


def replay(initial: OrderSnapshot, events: list[OrderEvent]) -> OrderSnapshot:
    """Fold an event log into a snapshot with ``apply``, as the store does one event at a time."""
    snapshot = initial
    for event in events:
        snapshot = apply(snapshot, event)
    return snapshot
