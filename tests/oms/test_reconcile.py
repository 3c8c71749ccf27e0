"""Startup reconciliation against the paper venue: missed acks, fills and cancels adopted, intents the venue
never received resubmitted, foreign orders recorded and left alone (or canceled by policy), a second pass
writes nothing, and a failure refuses to start. Every test runs on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from ai_trading.errors import ReconciliationError
from ai_trading.execution import SimulatorConfig
from ai_trading.oms.brokers.base import BrokerOrderStatus, BrokerUnavailable, OrderRequest
from ai_trading.oms.brokers.paper import PaperBroker
from ai_trading.oms.db import make_engine
from ai_trading.oms.intent_store import IntentStore
from ai_trading.oms.models import OrderEvent, OrderState
from ai_trading.oms.reconcile import ForeignOrderPolicy, Severity, reconcile
from ai_trading.oms.submission import OrderManager, to_request
from tests.oms.test_submission import BARS, assert_books_agree, intent, venue_orders_per_id


@pytest.fixture
def venue(venue_dsn: str) -> Iterator[PaperBroker]:
    engine = make_engine(venue_dsn)
    yield PaperBroker(engine, SimulatorConfig(), BARS, seed=3)
    engine.dispose()


def _event_counts(store: IntentStore, cids: list[str]) -> dict[str, int]:
    return {cid: len(store.events(cid)) for cid in cids}


def test_reconcile_adopts_what_was_missed_resubmits_the_unsent_and_a_second_pass_changes_nothing(
        store: IntentStore, venue: PaperBroker, caplog: pytest.LogCaptureFixture) -> None:
    manager = OrderManager(store, venue)
    lost_ack, missed_fill, missed_cancel, never_sent, created = (intent(n) for n in range(1, 6))
    # a run that crashed after sending, before recording the ack
    store.create(lost_ack)
    assert store.claim_for_submit(lost_ack.client_order_id)
    venue.submit(to_request(lost_ack))
    # acked, then filled and canceled at the venue while the OMS was down
    manager.submit(missed_fill)
    manager.submit(missed_cancel)
    venue.cancel(missed_cancel.broker_safe_id)
    # claimed, then the process died before the request left
    store.create(never_sent)
    assert store.claim_for_submit(never_sent.client_order_id)
    store.create(created)
    venue.advance(1)
    foreign = venue.place_external(OrderRequest("manual-1", "ORCL", "sell", 50.0))

    with caplog.at_level(logging.WARNING, logger="ai_trading.oms.reconcile"):
        report = reconcile(manager)
    assert report.ok and report.checked == 5
    kinds = {(e.kind, e.cid) for e in report.events}
    assert ("acked", lost_ack.client_order_id) in kinds
    assert ("filled", missed_fill.client_order_id) in kinds
    assert ("canceled", missed_cancel.client_order_id) in kinds
    assert ("resubmitted", never_sent.client_order_id) in kinds
    assert ("submitted", created.client_order_id) in kinds
    assert report.foreign == ("manual-1",)
    assert any("foreign_order" in r.getMessage() for r in caplog.records)
    assert store.get(missed_fill.client_order_id).state is OrderState.FILLED
    assert store.get(missed_cancel.client_order_id).state is OrderState.CANCELED
    everyone = [lost_ack, missed_fill, missed_cancel, never_sent, created]
    venue.advance(1)
    manager.sync()
    assert_books_agree(store, venue, everyone, foreign=frozenset({"manual-1"}))
    # the foreign order: recorded in the run's detail, untouched by us (it filled at the venue like any order)
    assert foreign.status is BrokerOrderStatus.NEW
    assert venue.get_order("manual-1").status is BrokerOrderStatus.FILLED
    last = store.last_reconciliation()
    assert last is not None and last.outcome == "ok" and last.counts["foreign"] == 1
    assert json.loads(last.detail or "{}")["foreign_orders"] == ["manual-1"]

    before = _event_counts(store, [i.client_order_id for i in everyone])
    second = reconcile(manager)
    assert second.ok and second.changes == 0
    assert [e.kind for e in second.events if e.kind != "foreign_order"] == []
    assert _event_counts(store, [i.client_order_id for i in everyone]) == before


def test_reconcile_foreign_policy_cancel_cancels_only_foreign_orders(store: IntentStore, venue: PaperBroker) -> None:
    manager = OrderManager(store, venue)
    ours = intent(1)
    manager.submit(ours)
    venue.place_external(OrderRequest("manual-2", "NVDA", "buy", 10.0))
    report = reconcile(manager, ForeignOrderPolicy.CANCEL)
    assert [(e.kind, e.severity) for e in report.events] == [("foreign_order_canceled", Severity.WARNING)]
    assert venue.get_order("manual-2").status is BrokerOrderStatus.CANCELED
    assert venue.get_order(ours.broker_safe_id).status is BrokerOrderStatus.NEW
    assert store.get(ours.client_order_id).state is OrderState.ACKED


def test_reconcile_alert_policy_raises_the_foreign_orders_severity(store: IntentStore, venue: PaperBroker) -> None:
    venue.place_external(OrderRequest("manual-3", "NVDA", "buy", 10.0))
    report = reconcile(OrderManager(store, venue), ForeignOrderPolicy.ALERT)
    assert [(e.kind, e.severity) for e in report.events] == [("foreign_order", Severity.WARNING)]
    assert venue.get_order("manual-3").status is BrokerOrderStatus.NEW


def test_reconcile_fails_and_refuses_to_start_when_the_broker_lost_an_acked_order(
        store: IntentStore, venue: PaperBroker) -> None:
    ghost = intent(9)
    store.create(ghost)
    store.claim_for_submit(ghost.client_order_id)
    store.record(ghost.client_order_id, OrderEvent.acked("P-not-at-this-venue"))
    with pytest.raises(ReconciliationError, match="unknown_at_broker"):
        reconcile(OrderManager(store, venue))
    last = store.last_reconciliation()
    assert last is not None and last.outcome == "failed"
    assert venue_orders_per_id(venue) == {}


class _Down:
    """A broker that cannot be reached at all."""

    def __getattr__(self, name: str) -> object:
        def call(*args: object, **kwargs: object) -> object:
            raise BrokerUnavailable(f"{name}: connection refused")
        return call


def test_reconcile_fails_when_the_broker_is_unreachable(store: IntentStore) -> None:
    store.create(intent(1))
    with pytest.raises(ReconciliationError, match="broker_unavailable"):
        reconcile(OrderManager(store, _Down()))  # type: ignore[arg-type]
    assert store.get(intent(1).client_order_id).state is OrderState.CREATED
    assert store.last_reconciliation().outcome == "failed"  # type: ignore[union-attr]
