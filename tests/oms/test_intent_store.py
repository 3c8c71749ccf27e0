"""IntentStore on SQLite and PostgreSQL: idempotent creates, atomic validated transitions, fills once,
replay, the claim race between threads, reconciliation queries and runs."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from ai_trading.errors import IllegalTransition, IntentConflict, OrderValidationError, Overfill, UnknownIntent
from ai_trading.oms.intent_store import IntentStore
from ai_trading.oms.models import Fill, OrderEvent, OrderState
from ai_trading.oms.tables import EventRow, FillRow, IntentRow
from tests.oms.conftest import make_intent

T0 = datetime(2024, 1, 2, 15, 0, tzinfo=UTC)


def _fill(trade_id: str, quantity: object, price: object = "101.25") -> Fill:
    return Fill(trade_id=trade_id, quantity=quantity, price=price, fee="0.05", timestamp=T0)  # type: ignore[arg-type]


def _count(engine: Engine, row: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(row)).scalar_one())


def _race(n: int, work: Callable[[], Any]) -> list[Any]:
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = work()
        except Exception as exc:  # collected: the test asserts on it
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_create_same_cid_returns_the_stored_intent_one_row(store: IntentStore, oms_engine: Engine) -> None:
    first = store.create(make_intent(1, quantity=10))
    again = store.create(make_intent(1, quantity=10.0, created_at=T0 + timedelta(days=1)))
    assert again == first  # the stored one, with its original created_at
    assert _count(oms_engine, IntentRow) == 1


def test_create_concurrent_same_cid_ends_with_one_row(store: IntentStore, oms_engine: Engine) -> None:
    results = _race(6, lambda: store.create(make_intent(2)))
    assert all(r == make_intent(2) for r in results), results
    assert _count(oms_engine, IntentRow) == 1


def test_create_same_cid_other_limit_price_raises_conflict(store: IntentStore) -> None:
    store.create(make_intent(3, order_type="limit", limit_price="99.5"))
    with pytest.raises(IntentConflict, match=r"stored as limit limit 99.5; created again as limit limit 99.6"):
        store.create(make_intent(3, order_type="limit", limit_price="99.6"))


def test_create_broker_safe_id_taken_by_another_cid_raises_conflict(store: IntentStore, oms_engine: Engine) -> None:
    from sqlalchemy import update

    a, b = make_intent(40), make_intent(41)
    store.create(a)
    with oms_engine.begin() as conn:  # forge the collision a sha256 prefix would practically never produce
        conn.execute(update(IntentRow).where(IntentRow.client_order_id == a.client_order_id)
                     .values(broker_safe_id=b.broker_safe_id))
    with pytest.raises(IntentConflict, match=f"its broker-safe id {b.broker_safe_id} is taken by {a.client_order_id}"):
        store.create(b)
    assert store.find(b.client_order_id) is None


def test_create_many_one_transaction_idempotent(store: IntentStore, oms_engine: Engine) -> None:
    store.create(make_intent(0))
    batch = [make_intent(n) for n in range(5)]
    stored = store.create_many(batch)
    assert [i.client_order_id for i in stored] == [i.client_order_id for i in batch]
    assert store.create_many(batch) == stored
    assert _count(oms_engine, IntentRow) == 5
    twice = [make_intent(50, order_type="limit", limit_price=1), make_intent(50, order_type="limit", limit_price=2)]
    with pytest.raises(IntentConflict, match="stored as limit limit 1; created again as limit limit 2"):
        store.create_many(twice)
    assert _count(oms_engine, IntentRow) == 5  # the batch is one transaction: nothing of it stays


def test_lifecycle_writes_state_events_fills_and_replays(store: IntentStore, oms_engine: Engine) -> None:
    cid = store.create(make_intent(4, quantity="1.5")).client_order_id
    assert store.claim_for_submit(cid)
    store.record(cid, OrderEvent.acked("B-4"))
    store.record(cid, OrderEvent.filled(_fill("T1", "0.5")))
    last = store.record(cid, OrderEvent.filled(_fill("T2", "1.0", price=102)))
    record = store.get(cid)
    assert record.snapshot == last
    assert (last.state, last.filled_quantity, last.fees, last.broker_order_id, last.trade_ids) == (
        OrderState.FILLED, Decimal("1.5"), Decimal("0.10"), "B-4", frozenset({"T1", "T2"}))
    assert record.intent.broker_order_id == "B-4"
    assert [(e.kind.value, e.sequence) for e in store.events(cid)] == [
        ("SUBMITTED", 1), ("ACKED", 2), ("FILLED", 3), ("FILLED", 4)]
    assert store.fills(cid) == [_fill("T1", "0.5"), _fill("T2", 1, price=102)]
    assert store.replay(cid) == last


def test_illegal_transition_writes_nothing(store: IntentStore, oms_engine: Engine) -> None:
    cid = store.create(make_intent(5)).client_order_id
    with pytest.raises(IllegalTransition, match=f"order {cid}: event ACKED is not allowed in state CREATED"):
        store.record(cid, OrderEvent.acked("B"))
    store.claim_for_submit(cid)
    store.record(cid, OrderEvent.rejected("no buying power"))
    before = store.get(cid)
    with pytest.raises(IllegalTransition, match="terminal state is final"):
        store.record(cid, OrderEvent.filled(_fill("T9", 1)))
    assert store.get(cid) == before
    assert (_count(oms_engine, EventRow), _count(oms_engine, FillRow)) == (2, 0)


def test_overfill_raises_and_writes_nothing(store: IntentStore, oms_engine: Engine) -> None:
    cid = store.create(make_intent(6, quantity=2)).client_order_id
    store.claim_for_submit(cid)
    store.record(cid, OrderEvent.filled(_fill("T1", "1.5")))
    with pytest.raises(Overfill, match=r"would fill 2\.6 of 2"):
        store.record(cid, OrderEvent.filled(_fill("T2", "1.1")))
    assert store.get(cid).snapshot.filled_quantity == Decimal("1.5")
    assert _count(oms_engine, FillRow) == 1


def test_duplicate_fill_is_applied_once(store: IntentStore, oms_engine: Engine) -> None:
    cid = store.create(make_intent(7)).client_order_id
    store.claim_for_submit(cid)
    first = store.record(cid, OrderEvent.filled(_fill("T1", 4), broker_order_id="B7"))
    assert store.record(cid, OrderEvent.filled(_fill("T1", 4))) == first
    assert (_count(oms_engine, FillRow), _count(oms_engine, EventRow)) == (1, 2)
    assert first.state is OrderState.PARTIAL_FILLED  # adopted without an ack


def test_fill_of_another_orders_trade_id_raises(store: IntentStore) -> None:
    a, b = (store.create(make_intent(n)).client_order_id for n in (8, 9))
    for cid in (a, b):
        store.claim_for_submit(cid)
    store.record(a, OrderEvent.filled(_fill("SHARED", 1)))
    before = store.get(b)
    with pytest.raises(IllegalTransition, match=f"order {b}: fill SHARED is already recorded for order {a}"):
        store.record(b, OrderEvent.filled(_fill("SHARED", 1)))
    assert store.get(b) == before and store.events(b) == store.events(b)[:1]


def test_unknown_intent_raises(store: IntentStore) -> None:
    with pytest.raises(UnknownIntent, match="no intent with client order id 'CIDv2:nope'"):
        store.claim_for_submit("CIDv2:nope")
    with pytest.raises(UnknownIntent):
        store.record("CIDv2:nope", OrderEvent.canceled())
    with pytest.raises(UnknownIntent):
        store.get("CIDv2:nope")
    assert store.find("CIDv2:nope") is None


def test_record_refuses_an_event_with_a_sequence(store: IntentStore) -> None:
    cid = store.create(make_intent(10)).client_order_id
    with pytest.raises(OrderValidationError, match="the store numbers events"):
        store.record(cid, OrderEvent(OrderEvent.submitted().kind, {}, sequence=1))


def test_claim_race_between_threads_one_winner(store: IntentStore, oms_engine: Engine) -> None:
    cid = store.create(make_intent(11)).client_order_id
    results = _race(8, lambda: store.claim_for_submit(cid))
    assert sorted(results, key=str) == [False] * 7 + [True]
    assert [e.kind.value for e in store.events(cid)] == ["SUBMITTED"]


def test_record_race_between_threads_no_lost_fill(store: IntentStore) -> None:
    cid = store.create(make_intent(12, quantity=8)).client_order_id
    store.claim_for_submit(cid)
    results = _race(8, lambda: store.record(cid, OrderEvent.filled(_fill(f"T{threading.get_ident()}", 1))))
    assert not [r for r in results if isinstance(r, Exception)], results
    snap = store.get(cid).snapshot
    assert (snap.state, snap.filled_quantity, len(snap.trade_ids), snap.sequence) == (OrderState.FILLED, 8, 8, 9)
    assert store.replay(cid) == snap


def test_queries_for_reconciliation(store: IntentStore) -> None:
    intents = [store.create(make_intent(n)) for n in range(20, 25)]
    cids = [i.client_order_id for i in intents]
    store.claim_for_submit(cids[1])
    store.claim_for_submit(cids[2])
    store.record(cids[2], OrderEvent.acked("B2"))
    store.record(cids[3], OrderEvent.canceled("withdrawn"))
    store.claim_for_submit(cids[4])
    store.record(cids[4], OrderEvent.filled(_fill("T4", 10)))
    assert [r.client_order_id for r in store.open_orders()] == cids[:3]
    assert [r.state for r in store.open_orders()] == [OrderState.CREATED, OrderState.SUBMITTED, OrderState.ACKED]
    counts = store.state_counts()
    assert counts == {**dict.fromkeys(OrderState, 0), OrderState.CREATED: 1, OrderState.SUBMITTED: 1,
                      OrderState.ACKED: 1, OrderState.CANCELED: 1, OrderState.FILLED: 1}
    found = store.find_by_broker_safe_id(intents[2].broker_safe_id)
    assert found is not None and found.intent.broker_order_id == "B2"
    assert store.find_by_broker_safe_id("c2notours") is None


def test_reconciliation_runs_recorded_and_last_shown(store: IntentStore) -> None:
    assert store.last_reconciliation() is None
    store.record_reconciliation("ok", {"adopted_fills": 2}, started_at=T0, finished_at=T0 + timedelta(seconds=1))
    store.record_reconciliation("failed", {"mismatches": 1}, started_at=T0 + timedelta(minutes=1),
                                finished_at=T0 + timedelta(minutes=2), detail="broker unavailable")
    last = store.last_reconciliation()
    assert last is not None
    assert (last.outcome, dict(last.counts), last.detail, last.finished_at) == (
        "failed", {"mismatches": 1}, "broker unavailable", T0 + timedelta(minutes=2))
    with pytest.raises(OrderValidationError, match="names to integers"):
        store.record_reconciliation("ok", {"x": 1.5}, started_at=T0)  # type: ignore[dict-item]


def test_restart_reads_the_same_state(oms_engine: Engine, oms_dsn: str) -> None:
    from ai_trading.oms.db import make_engine

    store = IntentStore(oms_engine)
    cid = store.create(make_intent(30, quantity="0.3")).client_order_id
    store.claim_for_submit(cid)
    for n in range(3):
        store.record(cid, OrderEvent.filled(_fill(f"T{n}", "0.1")))
    engine = make_engine(oms_dsn)
    try:
        again = IntentStore(engine).get(cid)
        assert again.state is OrderState.FILLED and again.snapshot.filled_quantity == Decimal("0.3")
        assert again == store.get(cid)
    finally:
        engine.dispose()


@pytest.fixture
def postgres_engine(postgres_database: str) -> Iterator[Engine]:
    """A PostgreSQL engine of its own (its pool is what the test inspects), at the migrations' head."""
    from ai_trading.oms.db import make_engine, upgrade_to_head

    engine = make_engine(postgres_database)
    try:
        upgrade_to_head(engine)
        yield engine
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_pooled_connection_closed_by_the_server_is_replaced_at_checkout(postgres_database: str,
                                                                       postgres_engine: Engine) -> None:
    # no pre-ping round trip guards a checkout: a connection the server closed while it sat in the pool
    # (a restart, an idle timeout) must still not reach a durable step
    import time

    import psycopg
    from sqlalchemy import text
    from sqlalchemy.engine import make_url

    engine = postgres_engine
    store = IntentStore(engine)
    cid = store.create(make_intent(40)).client_order_id
    with engine.connect() as conn:
        pids = {conn.execute(text("SELECT pg_backend_pid()")).scalar_one()}
    admin = make_url(postgres_database).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as killer:
        own = killer.execute("SELECT pg_backend_pid()").fetchone()
        pids = {pid for (pid,) in killer.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> %s",
            (own[0] if own else 0,))} | pids
        for pid in pids:
            killer.execute("SELECT pg_terminate_backend(%s)", (pid,))
        deadline = time.monotonic() + 10
        while killer.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)",
                             (list(pids),)).fetchone() != (0,):
            assert time.monotonic() < deadline, "the terminated backends did not exit"
            time.sleep(0.05)
    assert store.claim_for_submit(cid) is True
    assert store.record(cid, OrderEvent.acked("B-40")).state is OrderState.ACKED
    assert [e.kind.value for e in store.events(cid)] == ["SUBMITTED", "ACKED"]


@pytest.mark.postgres
def test_postgres_durable_steps_run_on_one_kept_connection(postgres_engine: Engine) -> None:
    # a pool checkout per step (with its switch to autocommit and back) costs more client time than the
    # step's one statement: after the first step, steps take no connection from the pool
    from sqlalchemy import event

    engine = postgres_engine
    store = IntentStore(engine)
    first = store.create(make_intent(60)).client_order_id
    checkouts: list[object] = []
    writers: list[object] = []  # the cursors the writes ran on (held, so no cursor's id is reused by a later one)
    event.listen(engine, "checkout", lambda *_: checkouts.append(1))
    event.listen(engine, "before_cursor_execute", lambda _conn, cursor, statement, *_:
                 None if statement.startswith("SELECT") else writers.append(cursor))
    for n in range(5):
        cid = store.create(make_intent(61 + n)).client_order_id
        assert store.create(make_intent(61 + n)).client_order_id == cid  # as each submit does: read back
        assert store.claim_for_submit(cid)
        store.record(cid, OrderEvent.acked(f"B-{n}"))
        store.record(cid, OrderEvent.filled(_fill(f"T6{n}", 10)))
    assert store.claim_for_submit(first)
    assert checkouts == []
    # ... and on one driver cursor: a new psycopg cursor per step costs more client time than its statement
    # (5 x create, create again, claim, ack, fill; then one claim)
    assert len(writers) == 26 and len({id(cursor) for cursor in writers}) == 1
    assert engine.pool.checkedout() == 1  # type: ignore[attr-defined]  # the kept one
    store.close()
    assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    assert store.record(first, OrderEvent.acked("B-60")).state is OrderState.ACKED  # takes a new one


@pytest.mark.postgres
def test_postgres_connection_a_step_failed_on_is_not_kept(postgres_engine: Engine) -> None:
    engine = postgres_engine
    store = IntentStore(engine)
    cids = [store.create(make_intent(70 + n)).client_order_id for n in range(2)]
    for cid in cids:
        assert store.claim_for_submit(cid)
    store.record(cids[0], OrderEvent.filled(_fill("T70", 1)))
    assert engine.pool.checkedout() == 1  # type: ignore[attr-defined]
    with pytest.raises(IllegalTransition, match="T70"):  # the trade id's unique key refuses the fill
        store.record(cids[1], OrderEvent.filled(_fill("T70", 1)))
    assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    assert store.record(cids[1], OrderEvent.filled(_fill("T71", 1))).filled_quantity == 1
    assert engine.pool.checkedout() == 1  # type: ignore[attr-defined]


def test_snapshot_this_store_wrote_never_decides_once_another_writer_moved_the_order(oms_engine: Engine) -> None:
    mine, other = IntentStore(oms_engine), IntentStore(oms_engine)  # two processes' stores, own memories
    cid = mine.create(make_intent(50, quantity=4)).client_order_id
    assert mine.claim_for_submit(cid)
    other.record(cid, OrderEvent.acked("B-50"))
    other.record(cid, OrderEvent.filled(_fill("T50-1", 1)))
    # `mine` last saw SUBMITTED: the fill must land on the stored PARTIAL_FILLED, not on what it remembers
    snap = mine.record(cid, OrderEvent.filled(_fill("T50-2", 1)))
    assert (snap.state, snap.filled_quantity, snap.sequence, snap.trade_ids) == (
        OrderState.PARTIAL_FILLED, 2, 4, frozenset({"T50-1", "T50-2"}))
    other.record(cid, OrderEvent.canceled("withdrawn"))
    with pytest.raises(IllegalTransition, match="CANCELED"):  # legal on what `mine` remembers, not on the store
        mine.record(cid, OrderEvent.filled(_fill("T50-3", 1)))
    assert mine.record(cid, OrderEvent.filled(_fill("T50-2", 1))) == mine.get(cid).snapshot  # a known trade: no-op
    assert [e.kind.value for e in mine.events(cid)] == ["SUBMITTED", "ACKED", "FILLED", "FILLED", "CANCELED"]
    assert mine.replay(cid) == mine.get(cid).snapshot
    assert _count(oms_engine, FillRow) == 2

