"""The order state machine: the transition table, illegal transitions, overfill, terminal states, fills
applied once, fills adopted before the ack."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from ai_trading.errors import IllegalTransition, OrderValidationError, Overfill
from ai_trading.oms.models import (
    TERMINAL_STATES,
    TRANSITIONS,
    EventKind,
    Fill,
    OrderEvent,
    OrderIntent,
    OrderSnapshot,
    OrderState,
    apply,
    replay,
)
from tests.oms.conftest import make_intent

T0 = datetime(2024, 1, 2, 15, 0, tzinfo=UTC)


def _fill(trade_id: str, quantity: object, price: object = 100) -> Fill:
    return Fill(trade_id=trade_id, quantity=quantity, price=price, fee="0.01", timestamp=T0)  # type: ignore[arg-type]


def _event(kind: EventKind, n: int = 0) -> OrderEvent:
    return {EventKind.SUBMITTED: OrderEvent.submitted(), EventKind.ACKED: OrderEvent.acked("B1"),
            EventKind.FILLED: OrderEvent.filled(_fill(f"t{n}", 1)), EventKind.CANCELED: OrderEvent.canceled("user"),
            EventKind.REJECTED: OrderEvent.rejected("venue")}[kind]


def _in(state: OrderState, quantity: int = 10, filled: int = 0) -> OrderSnapshot:
    broker = None if state in (OrderState.CREATED, OrderState.SUBMITTED) else "B1"
    return OrderSnapshot(client_order_id="CID-X", quantity=Decimal(quantity), state=state,
                         filled_quantity=Decimal(filled), broker_order_id=broker, sequence=3)


# Each state as it can really occur (a PARTIAL_FILLED order has something filled, a FILLED one everything).
REALISTIC = {s: _in(s) for s in OrderState} | {OrderState.PARTIAL_FILLED: _in(OrderState.PARTIAL_FILLED, filled=2),
                                               OrderState.FILLED: _in(OrderState.FILLED, filled=10)}


@pytest.mark.parametrize(("state", "kind"), list(itertools.product(OrderState, EventKind)))
def test_apply_every_pair_follows_the_table_or_raises(state: OrderState, kind: EventKind) -> None:
    before = REALISTIC[state]
    event = _event(kind)
    absorbed = kind is EventKind.ACKED and state in (OrderState.ACKED, OrderState.PARTIAL_FILLED)
    if (state, kind) in TRANSITIONS:
        after = apply(before, event)
        assert after.sequence == before.sequence + 1
        expected = TRANSITIONS[(state, kind)]
        assert after.state is expected
    elif absorbed:
        assert apply(before, event) is before
    else:
        with pytest.raises(IllegalTransition, match=rf"order CID-X: event {kind.value} is not allowed in state "
                                                    rf"{state.value}"):
            apply(before, event)


@pytest.mark.parametrize("state", sorted(TERMINAL_STATES))
@pytest.mark.parametrize("kind", list(EventKind))
def test_apply_on_terminal_state_raises_and_says_final(state: OrderState, kind: EventKind) -> None:
    with pytest.raises(IllegalTransition, match="terminal state is final"):
        apply(REALISTIC[state], _event(kind, n=99))


def test_transition_table_has_no_way_out_of_a_terminal_state() -> None:
    assert not [pair for pair in TRANSITIONS if pair[0] in TERMINAL_STATES]


def test_apply_fill_past_quantity_raises_overfill_naming_the_order() -> None:
    snap = apply(_in(OrderState.ACKED), OrderEvent.filled(_fill("t1", 7)))
    with pytest.raises(Overfill, match=r"order CID-X in state PARTIAL_FILLED: fill t2 of 4 would fill 11 of 10"):
        apply(snap, OrderEvent.filled(_fill("t2", 4)))


def test_apply_fill_completing_quantity_is_filled_and_decimal_exact() -> None:
    snap = _in(OrderState.ACKED, quantity=1)
    for i in range(10):
        snap = apply(snap, OrderEvent.filled(_fill(f"t{i}", 0.1)))
    assert snap.state is OrderState.FILLED
    assert snap.filled_quantity == Decimal(1)


def test_apply_known_trade_id_is_a_no_op_in_any_state() -> None:
    filled = apply(_in(OrderState.ACKED, quantity=5), OrderEvent.filled(_fill("t1", 5)))
    assert filled.state is OrderState.FILLED
    assert apply(filled, OrderEvent.filled(_fill("t1", 5))) is filled
    partial = apply(_in(OrderState.ACKED), OrderEvent.filled(_fill("t1", 5)))
    assert apply(partial, OrderEvent.filled(_fill("t1", 5))) is partial


def test_apply_fill_on_submitted_order_adopts_the_ack_and_broker_id() -> None:
    snap = apply(_in(OrderState.SUBMITTED), OrderEvent.filled(_fill("t1", 3), broker_order_id="B7"))
    assert (snap.state, snap.broker_order_id, snap.filled_quantity) == (OrderState.PARTIAL_FILLED, "B7", 3)
    late_ack = apply(snap, OrderEvent.acked("B7"))
    assert late_ack is snap


def test_apply_late_ack_records_broker_id_when_the_fill_named_none() -> None:
    snap = apply(_in(OrderState.SUBMITTED), OrderEvent.filled(_fill("t1", 3)))
    assert snap.broker_order_id is None
    acked = apply(snap, OrderEvent.acked("B9"))
    assert (acked.state, acked.broker_order_id, acked.sequence) == (OrderState.PARTIAL_FILLED, "B9", snap.sequence + 1)


def test_apply_ack_naming_another_broker_order_raises() -> None:
    with pytest.raises(IllegalTransition, match="names broker order 'B2', the order is 'B1'"):
        apply(_in(OrderState.ACKED), OrderEvent.acked("B2"))


def test_apply_event_out_of_sequence_raises() -> None:
    with pytest.raises(IllegalTransition, match="has sequence 7, expected 4"):
        apply(_in(OrderState.CREATED), OrderEvent(EventKind.SUBMITTED, {}, sequence=7))


def test_replay_folds_a_log_like_apply() -> None:
    intent = make_intent()
    log = [OrderEvent.submitted(), OrderEvent.acked("B1"), OrderEvent.filled(_fill("a", 4)),
           OrderEvent.filled(_fill("a", 4)), OrderEvent.filled(_fill("b", 6))]
    snap = replay(OrderSnapshot.initial(intent), log)
    assert (snap.state, snap.filled_quantity, snap.trade_ids, snap.sequence) == (
        OrderState.FILLED, 10, frozenset({"a", "b"}), 4)


@pytest.mark.parametrize(("quantity", "match"), [(0, "must be > 0"), (-1, "must be > 0"), (float("nan"), "finite"),
                                                 ("0.123456789", "more than 8 decimal places"), (True, "not a bool"),
                                                 ("ten", "not a finite number")])
def test_intent_bad_quantity_raises(quantity: object, match: str) -> None:
    with pytest.raises(OrderValidationError, match=match):
        make_intent(quantity=quantity)


def test_intent_limit_order_needs_a_limit_price() -> None:
    with pytest.raises(OrderValidationError, match="a limit order needs a limit_price"):
        make_intent(order_type="limit")
    with pytest.raises(OrderValidationError, match="timezone-aware"):
        make_intent(created_at=datetime(2024, 1, 2))


def test_intent_is_immutable() -> None:
    intent = make_intent()
    with pytest.raises(AttributeError):
        intent.quantity = Decimal(5)  # type: ignore[misc]
    assert isinstance(intent, OrderIntent)
