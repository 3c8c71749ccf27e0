"""A hypothesis state machine over the store: submits, acks, partial and full fills, cancels, rejects,
duplicated and out-of-order events and restarts (a new engine and store on the same database), with the
invariants: no overfill, filled quantity never decreases, terminal stays terminal, an event that raises
writes nothing, and replaying the event log rebuilds the stored state."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from ai_trading.errors import IllegalTransition, Overfill
from ai_trading.oms import models
from ai_trading.oms.db import make_engine, upgrade_to_head
from ai_trading.oms.intent_store import IntentStore
from ai_trading.oms.models import Fill, OrderEvent, OrderSnapshot, OrderState
from tests.oms.conftest import make_intent

N_ORDERS = 2
QUANTITY = Decimal(10)
T0 = datetime(2024, 1, 2, 15, 0, tzinfo=UTC)
_trade_numbers = itertools.count()

orders = st.integers(0, N_ORDERS - 1)


def machine_for(dsn: str) -> type[RuleBasedStateMachine]:
    class StoreMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.engine = make_engine(dsn)
            self.store = IntentStore(self.engine)
            run = uuid.uuid4().int % 10**12
            self.cids = [self.store.create(make_intent(run * 10 + i, quantity=QUANTITY)).client_order_id
                         for i in range(N_ORDERS)]
            self.last = {cid: self.store.get(cid).snapshot for cid in self.cids}
            self.applied: dict[str, list[Fill]] = {cid: [] for cid in self.cids}

        def _record(self, i: int, event: OrderEvent) -> None:
            cid = self.cids[i]
            before = self.store.get(cid)
            refused: IllegalTransition | None = None
            try:
                after = self.store.record(cid, event)
            except IllegalTransition as exc:
                refused = exc
            if refused is not None:
                assert self.store.get(cid) == before, f"{event.kind} raised {refused} but wrote"
                assert len(self.store.events(cid)) == before.snapshot.sequence
                if isinstance(refused, Overfill):
                    assert before.snapshot.filled_quantity + event.fill.quantity > QUANTITY
                return
            assert self.store.get(cid).snapshot == after
            if event.kind.value == "FILLED" and event.fill.trade_id not in before.snapshot.trade_ids:
                self.applied[cid].append(event.fill)

        @rule(i=orders)
        def submit(self, i: int) -> None:
            before = self.store.get(self.cids[i]).state
            assert self.store.claim_for_submit(self.cids[i]) == (before is OrderState.CREATED)

        @rule(i=orders, other=st.booleans())
        def ack(self, i: int, other: bool) -> None:
            self._record(i, OrderEvent.acked(f"B{i}-other" if other else f"B{i}"))

        @rule(i=orders, quantity=st.sampled_from([Decimal("0.5"), Decimal(1), Decimal(3), Decimal("6.5"), QUANTITY]),
              name_broker=st.booleans())
        def fill(self, i: int, quantity: Decimal, name_broker: bool) -> None:
            fill = Fill(trade_id=f"T{next(_trade_numbers)}-{uuid.uuid4().hex[:8]}", quantity=quantity, price="100.25",
                        fee="0.01", timestamp=T0)
            self._record(i, OrderEvent.filled(fill, broker_order_id=f"B{i}" if name_broker else None))

        @rule(i=orders, data=st.data())
        def duplicate_fill(self, i: int, data: st.DataObject) -> None:
            applied = self.applied[self.cids[i]]
            if not applied:
                return
            fill = data.draw(st.sampled_from(applied))
            before = self.store.get(self.cids[i])
            assert self.store.record(self.cids[i], OrderEvent.filled(fill)) == before.snapshot
            assert self.store.get(self.cids[i]) == before

        @rule(i=orders)
        def cancel(self, i: int) -> None:
            self._record(i, OrderEvent.canceled("requested"))

        @rule(i=orders)
        def reject(self, i: int) -> None:
            self._record(i, OrderEvent.rejected("venue said no"))

        @rule()
        def restart(self) -> None:
            self.engine.dispose()
            self.engine = make_engine(dsn)
            self.store = IntentStore(self.engine)

        @invariant()
        def books_hold(self) -> None:
            for cid in self.cids:
                record = self.store.get(cid)
                snap = record.snapshot
                prev = self.last[cid]
                assert snap.filled_quantity <= snap.quantity, "overfill"
                assert snap.filled_quantity >= prev.filled_quantity, "filled quantity decreased"
                if prev.is_terminal:
                    assert snap.state is prev.state, f"left terminal {prev.state} for {snap.state}"
                assert (snap.state is OrderState.FILLED) == (snap.filled_quantity == snap.quantity)
                assert snap.filled_quantity == sum((f.quantity for f in self.applied[cid]), Decimal(0))
                assert [f.trade_id for f in self.store.fills(cid)] == [f.trade_id for f in self.applied[cid]]
                assert models.replay(OrderSnapshot.initial(record.intent), self.store.events(cid)) == snap
                self.last[cid] = snap

        def teardown(self) -> None:
            self.engine.dispose()

    return StoreMachine


def test_store_state_machine_sqlite(tmp_path: Path) -> None:
    dsn = f"sqlite:///{tmp_path / 'oms.db'}"
    engine = make_engine(dsn)
    upgrade_to_head(engine)
    engine.dispose()
    run_state_machine_as_test(machine_for(dsn), settings=settings(
        max_examples=15, stateful_step_count=20, deadline=None, suppress_health_check=[HealthCheck.too_slow]))


@pytest.mark.postgres
def test_store_state_machine_postgres(postgres_database: str) -> None:
    engine = make_engine(postgres_database)
    upgrade_to_head(engine)
    engine.dispose()
    run_state_machine_as_test(machine_for(postgres_database), settings=settings(
        max_examples=8, stateful_step_count=20, deadline=None, suppress_health_check=[HealthCheck.too_slow]))
