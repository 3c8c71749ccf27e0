"""The submission protocol against the paper venue: lost requests and lost acknowledgements resolve by lookup
(0 duplicate venue orders, every intent in the venue's state), duplicate ids are adopted, sync brings fills
and cancels. Every test runs on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from ai_trading.data import load_bars
from ai_trading.execution import SimulatorConfig
from ai_trading.oms.brokers.base import BrokerOrderStatus, BrokerUnavailable
from ai_trading.oms.brokers.flaky import FlakyBroker, SubmitFault
from ai_trading.oms.brokers.paper import PaperBroker
from ai_trading.oms.brokers.paper_tables import PaperOrderRow
from ai_trading.oms.db import make_engine
from ai_trading.oms.intent_store import IntentStore
from ai_trading.oms.models import OrderIntent, OrderState
from ai_trading.oms.submission import OrderManager

BARS = load_bars(["NVDA", "ORCL"], start="2003-01-01", end="2003-03-31")


@pytest.fixture
def venue(venue_dsn: str) -> Iterator[PaperBroker]:
    engine = make_engine(venue_dsn)
    yield PaperBroker(engine, SimulatorConfig(), BARS, seed=3)
    engine.dispose()


def intent(n: int, symbol: str = "NVDA", side: str = "buy", quantity: float = 100) -> OrderIntent:
    return OrderIntent(strategy="trend", symbol=symbol, side=side, quantity=quantity,  # type: ignore[arg-type]
                       session="2003-01-02", horizon="1d", signal_hash=f"{n:08x}",
                       created_at=datetime(2003, 1, 2, tzinfo=UTC))


def venue_orders_per_id(venue: PaperBroker) -> dict[str, int]:
    with venue._sessions() as session:
        return dict(session.execute(select(PaperOrderRow.client_order_id, func.count())
                                    .group_by(PaperOrderRow.client_order_id)).all())


def assert_books_agree(store: IntentStore, venue: PaperBroker, intents: list[OrderIntent],
                       foreign: frozenset[str] = frozenset()) -> None:
    """One venue order per client id, exactly the intents' (plus ``foreign``), each intent in its order's
    state with its fills."""
    counts = venue_orders_per_id(venue)
    assert set(counts.values()) <= {1}
    assert set(counts) == {i.broker_safe_id for i in intents} | foreign
    expected_state = {BrokerOrderStatus.NEW: OrderState.ACKED, BrokerOrderStatus.FILLED: OrderState.FILLED,
                      BrokerOrderStatus.PARTIALLY_FILLED: OrderState.PARTIAL_FILLED,
                      BrokerOrderStatus.CANCELED: OrderState.CANCELED, BrokerOrderStatus.REJECTED: OrderState.REJECTED}
    for i in intents:
        order = venue.get_order(i.broker_safe_id)
        assert order is not None
        record = store.get(i.client_order_id)
        assert record.state is expected_state[order.status], (i.client_order_id, record.state, order.status)
        if order.status is not BrokerOrderStatus.REJECTED:  # a reject carries no broker order id to the OMS
            assert record.snapshot.broker_order_id == order.broker_order_id
        venue_fills = [f for f in venue.list_fills() if f.client_order_id == i.broker_safe_id]
        assert [f.trade_id for f in store.fills(i.client_order_id)] == [f.trade_id for f in venue_fills]
        assert float(record.snapshot.filled_quantity) == pytest.approx(order.filled_quantity, abs=1e-8)


@pytest.mark.parametrize("fault", [SubmitFault.LOST_ACK, SubmitFault.LOST_REQUEST])
def test_submit_unknown_outcome_resolves_by_lookup_without_duplicates(
        store: IntentStore, venue: PaperBroker, fault: SubmitFault) -> None:
    flaky = FlakyBroker(venue, [fault, None, fault, fault, None])
    manager = OrderManager(store, flaky)
    intents = [intent(n) for n in range(4)]
    records = [manager.submit(i) for i in intents]
    assert [f for f, _ in flaky.injected] == [fault] * 3
    assert all(r.state is OrderState.ACKED for r in records)
    assert_books_agree(store, venue, intents)
    venue.advance(1)
    manager.sync()
    assert all(store.get(i.client_order_id).state is OrderState.FILLED for i in intents)
    assert_books_agree(store, venue, intents)
    # submitting again (a restarted strategy re-deriving the same intents) sends nothing
    again = [manager.submit(i) for i in intents]
    assert all(r.state is OrderState.FILLED for r in again)
    assert_books_agree(store, venue, intents)


def test_submit_gives_up_leaving_submitted_when_the_venue_stays_unreachable(
        store: IntentStore, venue: PaperBroker) -> None:
    flaky = FlakyBroker(venue, [SubmitFault.LOST_ACK, SubmitFault.LOST_REQUEST, SubmitFault.LOST_REQUEST])
    manager = OrderManager(store, flaky, lookup_attempts=1)
    with pytest.raises(BrokerUnavailable, match="stays SUBMITTED"):
        manager.submit(intent(1))
    assert store.get(intent(1).client_order_id).state is OrderState.SUBMITTED
    # the next caller (a restart's reconciliation) looks it up first and adopts the venue's order
    record = OrderManager(store, flaky).send_claimed(intent(1))
    assert record.state is OrderState.ACKED
    assert_books_agree(store, venue, [intent(1)])


def test_cancel_and_reject_are_recorded_from_the_venue(store: IntentStore, venue: PaperBroker) -> None:
    manager = OrderManager(store, venue)
    open_one, unknown_symbol, withdrawn = intent(1), intent(2, symbol="ZZZZ"), intent(3)
    assert manager.submit(open_one).state is OrderState.ACKED
    assert manager.submit(unknown_symbol).state is OrderState.REJECTED
    assert manager.cancel(open_one.client_order_id).state is OrderState.CANCELED
    store.create(withdrawn)
    assert manager.cancel(withdrawn.client_order_id).state is OrderState.CANCELED
    assert venue.get_order(withdrawn.broker_safe_id) is None  # withdrawn before it was sent: never at the venue
    assert_books_agree(store, venue, [open_one, unknown_symbol])


def test_sync_records_fills_once_and_a_venue_side_cancel(store: IntentStore, venue: PaperBroker) -> None:
    manager = OrderManager(store, venue)
    bought, canceled = intent(1), intent(2, symbol="ORCL")
    manager.submit(bought)
    manager.submit(canceled)
    venue.cancel(canceled.broker_safe_id)  # e.g. by the broker's risk desk
    venue.advance(2)
    first = manager.sync()
    assert sorted(c.kind for c in first) == ["canceled", "filled"]
    assert manager.sync() == []  # nothing new: nothing written
    assert len(store.events(bought.client_order_id)) == 3  # SUBMITTED, ACKED, FILLED
    assert_books_agree(store, venue, [bought, canceled])
