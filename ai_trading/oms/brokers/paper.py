"""The paper venue: a durable broker, with its own database, that fills orders through the execution simulator.

It holds orders by client order id (unique, enforced by the database, as real brokers do), gives each a
broker order id, and fills the open ones when a bar arrives (:meth:`PaperBroker.advance`,
:meth:`PaperBroker.on_bar`) with the simulator's per-order path resumed on that bar
(:meth:`~ai_trading.execution.ExecutionSimulator.execute_bar`): the one fill rule (``kernels.fill_slice``),
far-touch limits, the bar's volume shared between the orders working on it, partial fills carried to the
next bar. So a session's fills are those of one ``execute_many`` call over its orders on a simulator with the
same seed. Each bar's fills, the orders' new states and the venue's clock (the last bar processed) commit in
one transaction: a venue reopened on the same database continues exactly where the last one stopped.

The venue's clock is its market's bars: an order submitted while bar ``t`` is the last processed one is
stamped with ``t``'s timestamp (decided at its close) and works from the symbol's next bar. An order the
market cannot fill (unknown symbol, no bar left) is accepted and rejected, with the reason; a malformed
request (quantity not > 0, limit price missing or not > 0) is refused with :class:`InvalidOrderRequest`
and nothing is created.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict
from datetime import datetime

import pandas as pd
from sqlalchemy import Engine, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from ai_trading.data.fingerprint import dataset_fingerprint
from ai_trading.data.frequency import BarFrequency
from ai_trading.errors import ConfigError, OrderValidationError
from ai_trading.execution import ExecutionSimulator, MarketArrays, SimOrder, SimulatorConfig, TimeInForce
from ai_trading.execution import OrderSide as SimSide
from ai_trading.execution import OrderType as SimType
from ai_trading.execution.kernels import EPS_SHARES
from ai_trading.oms.brokers.base import (
    BrokerError,
    BrokerFill,
    BrokerOrder,
    BrokerOrderStatus,
    BrokerUnavailable,
    DuplicateClientOrderId,
    OrderRequest,
    UnknownOrder,
)
from ai_trading.oms.brokers.paper_tables import PaperFillRow, PaperOrderRow, PaperVenueRow
from ai_trading.oms.db import require_head, upsert_insert
from ai_trading.oms.models import OrderType, Side

log = logging.getLogger(__name__)

_VENUE_ID = 1
_OPEN = (BrokerOrderStatus.NEW.value, BrokerOrderStatus.PARTIALLY_FILLED.value)
MAX_CLIENT_ORDER_ID = 128  # the column's width


class InvalidOrderRequest(BrokerError):
    """The venue refused a malformed request (like a broker's 422): no order was created."""


class VenueClockError(BrokerError):
    """A bar was asked for that the venue cannot process next (already processed, or not in its market)."""


def market_fingerprint(config: SimulatorConfig, bars: pd.DataFrame, seed: int) -> str:
    """SHA-256 of what decides the venue's fills: the bars, the simulator preset and the seed."""
    payload = {"bars": dataset_fingerprint(bars), "simulator": asdict(config), "seed": seed}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class PaperBroker:
    """A durable paper venue on ``engine`` (its own database, at the migrations' head) over ``bars``.

    ``config`` is the venue's cost truth (a simulator preset) and ``seed`` its latency noise; both, with the
    bars, are pinned in the database on first use and a venue reopened with other ones is refused.
    ``time_in_force`` applies to every order (GTC: open until filled or cancelled; DAY: the remainder is
    cancelled at its session's end).
    """

    def __init__(self, engine: Engine, config: SimulatorConfig, bars: pd.DataFrame, *, seed: int = 0,
                 frequency: BarFrequency | None = None, time_in_force: TimeInForce = TimeInForce.GTC) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ConfigError(f"paper venue seed={seed!r}: must be an int (it is pinned in the venue's database)")
        self.time_in_force = TimeInForce(time_in_force)
        require_head(engine, "paper venue database")
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._sim = ExecutionSimulator(config, bars, seed=seed, frequency=frequency)
        self._stamps: list[pd.Timestamp] = list(self._sim.market.timestamps)
        fingerprint = market_fingerprint(config, bars, seed)
        with self._sessions.begin() as session:
            # Several processes may open a fresh venue at once: the first insert pins it, the others read it.
            session.execute(upsert_insert(engine)(PaperVenueRow).values(
                id=_VENUE_ID, market_fingerprint=fingerprint, cursor=0, cursor_at=self._stamps[0].to_pydatetime(),
            ).on_conflict_do_nothing(index_elements=["id"]))
            venue = session.get_one(PaperVenueRow, _VENUE_ID)
            if venue.market_fingerprint != fingerprint:
                raise ConfigError(f"paper venue database {engine.url.render_as_string(hide_password=True)} runs "
                                  f"on market {venue.market_fingerprint[:12]} (bars, simulator preset, seed); "
                                  f"given {fingerprint[:12]}: use that venue's inputs or another database")
            else:
                cursor = venue.cursor
        log.info("paper venue open url=%s bars=%d symbols=%s cursor=%d", engine.url.render_as_string(True),
                 len(self._stamps), ",".join(self._sim.market.symbols), cursor)

    # -- the venue's clock and market -----------------------------------------------------------------
    @property
    def market(self) -> MarketArrays:
        """The venue's market (its quotes: ``half_spread`` is the half-spread it charges)."""
        return self._sim.market

    @property
    def cursor(self) -> int:
        """The last bar (row of :attr:`market`) processed; orders submitted now are decided at its close."""
        with self._sessions() as session:
            return int(session.execute(select(PaperVenueRow.cursor)).scalar_one())

    @property
    def clock(self) -> pd.Timestamp:
        """Timestamp of the last bar processed."""
        return self._stamps[self.cursor]

    def advance(self, bars: int = 1) -> list[BrokerFill]:
        """Process the next ``bars`` bars, each committed on its own; returns their fills, oldest first."""
        if isinstance(bars, bool) or not isinstance(bars, int) or bars < 1:
            raise VenueClockError(f"advance(bars={bars!r}): must be an int >= 1")
        return self._process_until(self.cursor + bars)

    def on_bar(self, timestamp: datetime | pd.Timestamp) -> list[BrokerFill]:
        """A bar of the venue's market arrived: process every bar up to and including it."""
        ts = pd.Timestamp(timestamp)
        if ts.tzinfo is None:
            raise VenueClockError(f"bar timestamp {timestamp!r} must be tz-aware")
        t = int(self._sim.market.timestamps.searchsorted(ts))
        if t >= len(self._stamps) or self._stamps[t] != ts:
            raise VenueClockError(f"bar {ts} is not a bar of the venue's market "
                                  f"({self._stamps[0]} .. {self._stamps[-1]})")
        cursor = self.cursor
        if t <= cursor:
            raise VenueClockError(f"bar {ts} was already processed (the venue is at {self._stamps[cursor]})")
        return self._process_until(t)

    # -- the Broker protocol --------------------------------------------------------------------------
    def submit(self, request: OrderRequest) -> BrokerOrder:
        """Accept an order; ``DuplicateClientOrderId`` (nothing created) when its id exists."""
        return self._accept(request, external=False)

    def place_external(self, request: OrderRequest) -> BrokerOrder:
        """An order placed on the venue directly, not through the OMS (another app, a person at the
        broker's web page): the venue treats it like any other, and flags it for people reading its tables."""
        return self._accept(request, external=True)

    def cancel(self, client_order_id: str) -> BrokerOrder:
        with self._sessions.begin() as session:
            self._lock(session)
            row = self._row(session, client_order_id)
            if row is None:
                raise UnknownOrder(client_order_id)
            if row.status in _OPEN:
                row.status = BrokerOrderStatus.CANCELED.value
            return self._to_order(row)

    def get_order(self, client_order_id: str) -> BrokerOrder | None:
        with self._sessions() as session:
            row = self._row(session, client_order_id)
            return None if row is None else self._to_order(row)

    def list_open_orders(self) -> list[BrokerOrder]:
        with self._sessions() as session:
            rows = session.scalars(select(PaperOrderRow).where(PaperOrderRow.status.in_(_OPEN))
                                   .order_by(PaperOrderRow.seq)).all()
            return [self._to_order(row) for row in rows]

    def list_fills(self, since: datetime | None = None) -> list[BrokerFill]:
        first = 0
        if since is not None:
            ts = pd.Timestamp(since)
            if ts.tzinfo is None:
                raise OrderValidationError(f"list_fills since={since!r} must be tz-aware")
            first = int(self._sim.market.timestamps.searchsorted(ts))  # fills happen only at bar timestamps
        with self._sessions() as session:
            rows = session.execute(
                select(PaperFillRow, PaperOrderRow).join(PaperOrderRow, PaperFillRow.order_seq == PaperOrderRow.seq)
                .where(PaperFillRow.bar >= first).order_by(PaperFillRow.bar, PaperFillRow.order_seq)).all()
            return [self._to_fill(fill, order) for fill, order in rows]

    # -- internals --------------------------------------------------------------------------------------
    @staticmethod
    def _lock(session: Session) -> PaperVenueRow:
        # Every writer takes the venue row's write lock first (a row lock on PostgreSQL, the database's write
        # lock on SQLite), so a submit never reads a clock that a bar being processed is about to move.
        session.execute(update(PaperVenueRow).where(PaperVenueRow.id == _VENUE_ID)
                        .values(cursor=PaperVenueRow.cursor))
        return session.execute(select(PaperVenueRow).where(PaperVenueRow.id == _VENUE_ID)
                               .execution_options(populate_existing=True)).scalar_one()

    @staticmethod
    def _row(session: Session, client_order_id: str) -> PaperOrderRow | None:
        return session.scalars(select(PaperOrderRow)
                               .where(PaperOrderRow.client_order_id == client_order_id)).one_or_none()

    def _accept(self, request: OrderRequest, *, external: bool) -> BrokerOrder:
        cid = request.client_order_id
        if not isinstance(cid, str) or not cid or len(cid) > MAX_CLIENT_ORDER_ID:
            raise InvalidOrderRequest(f"client order id {cid!r}: must be 1..{MAX_CLIENT_ORDER_ID} characters")
        try:
            with self._sessions.begin() as session:
                venue = self._lock(session)
                if self._row(session, cid) is not None:
                    raise DuplicateClientOrderId(cid)
                row = self._new_row(request, venue.cursor, external)
                session.add(row)
                session.flush()
                order = self._to_order(row)
        except IntegrityError:
            # Another process took the id between the check and the insert: the unique constraint decides.
            if self.get_order(cid) is not None:
                raise DuplicateClientOrderId(cid) from None
            raise
        except OperationalError as exc:
            raise BrokerUnavailable(f"paper venue database failed on submit {cid!r}: {exc.orig}") from exc
        log.info("paper order accepted cid=%s broker_id=%s symbol=%s side=%s qty=%g status=%s external=%s", cid,
                 order.broker_order_id, order.symbol, order.side, order.quantity, order.status, external)
        return order

    def _new_row(self, request: OrderRequest, cursor: int, external: bool) -> PaperOrderRow:
        cid = request.client_order_id
        try:
            side, kind = Side(request.side), OrderType(request.order_type)
            sim_order = SimOrder(request.symbol, SimSide(side.value), request.quantity, self._stamps[cursor],
                                 SimType(kind.value), request.limit_price, self.time_in_force)
        except (ValueError, OrderValidationError) as exc:
            raise InvalidOrderRequest(f"order {cid!r}: {exc}") from None
        first: int | None = None
        last: int | None = None
        try:
            first, last = self._sim.order_window(sim_order)
            status, reason = BrokerOrderStatus.NEW, None
        except OrderValidationError as exc:
            status, reason = BrokerOrderStatus.REJECTED, str(exc)
        return PaperOrderRow(
            client_order_id=cid, broker_order_id="P" + hashlib.sha256(cid.encode()).hexdigest()[:24],
            symbol=request.symbol, side=side.value, quantity=sim_order.quantity, order_type=kind.value,
            limit_price=sim_order.limit_price, time_in_force=self.time_in_force.value, status=status.value,
            filled_quantity=0.0, filled_notional=0.0, submitted_bar=cursor,
            submitted_at=self._stamps[cursor].to_pydatetime(), first_bar=first, last_bar=last,
            reject_reason=reason, external=external)

    def _sim_order(self, row: PaperOrderRow) -> SimOrder:
        return SimOrder(row.symbol, SimSide(row.side), row.quantity, self._stamps[row.submitted_bar],
                        SimType(row.order_type), row.limit_price, TimeInForce(row.time_in_force))

    def _process_until(self, last: int) -> list[BrokerFill]:
        """Process bars until bar ``last`` is processed (by this venue object or another on the database)."""
        if last >= len(self._stamps):
            raise VenueClockError(f"the venue's market has no bar after {self._stamps[-1]}")
        fills: list[BrokerFill] = []
        while (step := self._process_next_bar(last)) is not None:
            fills.extend(step)
        return fills

    def _process_next_bar(self, last: int) -> list[BrokerFill] | None:
        """The next bar's fills, committed with the orders' states and the clock; None when bar ``last``
        was already processed (the clock is read under the venue's lock, so no bar is processed twice)."""
        fills: list[BrokerFill] = []
        with self._sessions.begin() as session:
            venue = self._lock(session)
            t = venue.cursor + 1
            if t > last:
                return None
            rows = session.scalars(select(PaperOrderRow).where(PaperOrderRow.status.in_(_OPEN))
                                   .order_by(PaperOrderRow.seq)).all()
            events = self._sim.execute_bar(t, [self._sim_order(r) for r in rows], [r.filled_quantity for r in rows])
            when = self._stamps[t].to_pydatetime()
            for row, event in zip(rows, events, strict=True):
                if event is not None:
                    fill = PaperFillRow(trade_id=f"{row.broker_order_id}-{t}", order_seq=row.seq, bar=t,
                                        timestamp=when, quantity=event.quantity, price=event.price, fee=event.fee,
                                        reference_price=event.reference_price, spread_cost=event.spread_cost,
                                        impact_cost=event.impact_cost, liquidity=event.liquidity.value)
                    session.add(fill)
                    row.filled_quantity = row.filled_quantity + event.quantity
                    row.filled_notional = row.filled_notional + event.quantity * event.price
                    fills.append(self._to_fill(fill, row))
                if row.quantity - row.filled_quantity <= EPS_SHARES:
                    row.status = BrokerOrderStatus.FILLED.value
                elif (row.last_bar is not None and t >= row.last_bar
                      and row.time_in_force != TimeInForce.GTC.value):
                    row.status = BrokerOrderStatus.CANCELED.value  # DAY at its session's end, IOC after its bar
                elif row.filled_quantity > 0.0:
                    row.status = BrokerOrderStatus.PARTIALLY_FILLED.value
            venue.cursor = t
            venue.cursor_at = when
        log.info("paper venue bar=%d ts=%s open_orders=%d fills=%d", t, self._stamps[t], len(rows), len(fills))
        return fills

    def _to_order(self, row: PaperOrderRow) -> BrokerOrder:
        filled = row.filled_quantity
        return BrokerOrder(
            client_order_id=row.client_order_id, broker_order_id=row.broker_order_id, symbol=row.symbol,
            side=Side(row.side), quantity=row.quantity, order_type=OrderType(row.order_type),
            limit_price=row.limit_price, status=BrokerOrderStatus(row.status), filled_quantity=filled,
            average_price=row.filled_notional / filled if filled > 0.0 else None,
            submitted_at=self._stamps[row.submitted_bar].to_pydatetime(), reject_reason=row.reject_reason)

    def _to_fill(self, fill: PaperFillRow, order: PaperOrderRow) -> BrokerFill:
        return BrokerFill(trade_id=fill.trade_id, broker_order_id=order.broker_order_id,
                          client_order_id=order.client_order_id, symbol=order.symbol, side=Side(order.side),
                          quantity=fill.quantity, price=fill.price, fee=fill.fee,
                          timestamp=self._stamps[fill.bar].to_pydatetime())
