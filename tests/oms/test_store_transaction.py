"""``IntentStore.transaction``: what a rebalance reads (its working book, the kill switch) and the intents it
creates commit together or not at all, and on SQLite no other writer commits in between (the write lock is
taken first); ``IntentStore.working_book``, that book in one read."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy import Engine, event, func, select
from sqlalchemy.exc import OperationalError

from ai_trading.errors import ConfigError
from ai_trading.monitoring.killswitch import KillSwitch, KillSwitchMode
from ai_trading.oms.db import make_engine, upgrade_to_head
from ai_trading.oms.intent_store import IntentStore
from ai_trading.oms.models import Fill, OrderEvent, Side
from ai_trading.oms.tables import IntentRow
from tests.oms.conftest import make_intent


def _stored(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(IntentRow)).scalar_one())


def test_reads_and_creates_commit_together_when_the_block_ends(store: IntentStore, oms_engine: Engine) -> None:
    switch = KillSwitch(oms_engine)
    with store.transaction() as conn:
        assert store.working_book("momo", 0, conn) == ([], [])
        assert not switch.state(conn).engaged
        created = store.create_many([make_intent(1), make_intent(2, symbol="MSFT")], conn)
        assert conn.in_transaction()
        assert _stored(oms_engine) == 0  # another connection sees nothing before the commit
    assert _stored(oms_engine) == 2
    assert [r.client_order_id for r in store.open_orders()] == [i.client_order_id for i in created]


def test_a_block_of_the_decide_paths_reads_and_creates_alone_commits(store: IntentStore, oms_engine: Engine) -> None:
    # the engine's rebalance without a kill switch: statements that run on the driver, nothing else
    with store.transaction() as conn:
        assert store.working_book("momo", 0, conn) == ([], [])
        store.create_many([make_intent(1), make_intent(2, symbol="MSFT")], conn)
    assert _stored(oms_engine) == 2


def test_a_failing_block_leaves_nothing_stored(store: IntentStore, oms_engine: Engine) -> None:
    with pytest.raises(RuntimeError, match="after the insert"), store.transaction() as conn:
        store.create_many([make_intent(1)], conn)
        raise RuntimeError("after the insert")
    assert _stored(oms_engine) == 0
    assert store.create_many([make_intent(1)])[0].client_order_id == make_intent(1).client_order_id
    assert _stored(oms_engine) == 1


def test_the_kill_switch_is_read_inside_the_transaction_and_only_on_its_own_database(
        store: IntentStore, oms_engine: Engine, tmp_path: object) -> None:
    switch = KillSwitch(oms_engine)
    switch.engage("test", who="ops", mode=KillSwitchMode.REDUCE_ONLY)
    with store.transaction() as conn:
        state = switch.state(conn)
    assert state.engaged and state.mode is KillSwitchMode.REDUCE_ONLY
    other = make_engine(f"sqlite:///{tmp_path}/other.db")
    upgrade_to_head(other)
    try:
        with store.transaction() as conn, pytest.raises(ConfigError, match="read on a connection to"):
            KillSwitch(other).state(conn)
    finally:
        other.dispose()


def test_on_sqlite_the_write_lock_is_held_from_the_start(tmp_path: object) -> None:
    path = f"{tmp_path}/lock.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade_to_head(engine)
    store = IntentStore(engine)
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        with store.transaction() as conn:
            store.working_book("momo", 0, conn)  # only reads so far: another writer is already refused
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
        other.execute("BEGIN IMMEDIATE")  # released by the commit
        other.execute("ROLLBACK")
    finally:
        other.close()
        engine.dispose()


def test_on_sqlite_a_write_lock_held_past_the_busy_timeout_is_sqlalchemys_error_and_writes_nothing(
        tmp_path: object) -> None:
    path = f"{tmp_path}/held.db"
    engine = make_engine(f"sqlite:///{path}")
    event.listen(engine, "connect", lambda dbapi, _record: dbapi.execute("PRAGMA busy_timeout=100"))
    upgrade_to_head(engine)
    store = IntentStore(engine)
    intent = store.create(make_intent(1))
    assert store.claim_for_submit(intent.client_order_id)
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(OperationalError, match="locked"):
            store.record(intent.client_order_id, OrderEvent.acked("B-1"))
        with pytest.raises(OperationalError, match="locked"), store.transaction() as conn:
            store.create_many([make_intent(2)], conn)
        other.execute("ROLLBACK")
        assert store.get(intent.client_order_id).state.value == "SUBMITTED"  # nothing of the ack went in
        assert _stored(engine) == 1
        assert store.record(intent.client_order_id, OrderEvent.acked("B-1")).state.value == "ACKED"
    finally:
        other.close()
        engine.dispose()


def test_an_in_memory_sqlite_database_opens_and_stores() -> None:
    engine = make_engine("sqlite://")
    try:
        upgrade_to_head(engine)
        store = IntentStore(engine)
        store.create(make_intent(1))
        assert _stored(engine) == 1
    finally:
        engine.dispose()


def test_working_book_reads_new_fills_and_open_rests_of_one_strategy(store: IntentStore) -> None:
    at = datetime(2024, 1, 2, 15, 0, tzinfo=UTC)

    def fill(trade_id: str, quantity: str, price: str = "101.25") -> OrderEvent:
        return OrderEvent.filled(Fill(trade_id=trade_id, quantity=Decimal(quantity), price=Decimal(price),
                                      fee=Decimal("0.05"), timestamp=at))

    done, partial, waiting = make_intent(1), make_intent(2, symbol="MSFT", side="sell"), make_intent(3, quantity=7)
    other = make_intent(4, strategy="other")
    for intent in (done, partial, waiting, other):
        store.create(intent)
    for intent in (done, partial, other):
        assert store.claim_for_submit(intent.client_order_id)
        store.record(intent.client_order_id, OrderEvent.acked(f"b-{intent.signal_hash}"))
    store.record(done.client_order_id, fill("t1", "10"))
    store.record(partial.client_order_id, fill("t2", "2.5", "50.5"))
    store.record(other.client_order_id, fill("t3", "1"))
    fills, rests = store.working_book("momo", 0)
    assert [(f.symbol, f.side, f.quantity, f.price, f.fee) for f in fills] == [
        ("AAPL", Side.BUY, Decimal(10), Decimal("101.25"), Decimal("0.05")),
        ("MSFT", Side.SELL, Decimal("2.5"), Decimal("50.5"), Decimal("0.05"))]
    assert [f.id for f in fills] == [s.id for s in store.fills_after(0, "momo")]
    # the filled order is terminal; the partial one's rest and the unsent one count, the other strategy not
    assert rests == [("MSFT", Side.SELL, Decimal("7.5")), ("AAPL", Side.BUY, Decimal(7))]
    later, same = store.working_book("momo", fills[0].id)
    assert [f.id for f in later] == [fills[1].id] and same == rests
    assert store.working_book("momo", fills[1].id)[0] == []


def test_working_book_reads_eight_decimal_places_as_the_store_holds_them(store: IntentStore) -> None:
    intent = make_intent(1, quantity="1234.56789012")
    store.create(intent)
    assert store.claim_for_submit(intent.client_order_id)
    store.record(intent.client_order_id, OrderEvent.acked("b-1"))
    store.record(intent.client_order_id, OrderEvent.filled(Fill(
        trade_id="t1", quantity=Decimal("1000.00000001"), price=Decimal("123456.12345678"), fee=Decimal("0.00000001"),
        timestamp=datetime(2024, 1, 2, 15, 0, tzinfo=UTC))))
    fills, rests = store.working_book("momo", 0)
    assert [(f.quantity, f.price, f.fee) for f in fills] == [
        (s.fill.quantity, s.fill.price, s.fill.fee) for s in store.fills_after(0, "momo")] == [
        (Decimal("1000.00000001"), Decimal("123456.12345678"), Decimal("0.00000001"))]
    assert rests == [("AAPL", Side.BUY, Decimal("234.56789011"))]


def test_create_many_in_a_transaction_raises_sqlalchemys_error_and_fires_cursor_events(
        store: IntentStore, oms_engine: Engine) -> None:
    from sqlalchemy import event, update
    from sqlalchemy.exc import IntegrityError

    seen: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_rest: object) -> None:
        seen.append(statement)

    a, b = make_intent(1), make_intent(2)
    store.create(a)
    with oms_engine.begin() as conn:  # forge the collision a sha256 prefix would practically never produce
        conn.execute(update(IntentRow).where(IntentRow.client_order_id == a.client_order_id)
                     .values(broker_safe_id=b.broker_safe_id))
    event.listen(oms_engine, "before_cursor_execute", record)
    try:
        with pytest.raises(IntegrityError), store.transaction() as conn:
            store.working_book("momo", 0, conn)
            store.create_many([b], conn)
    finally:
        event.remove(oms_engine, "before_cursor_execute", record)
    assert any(s.lstrip().startswith("SELECT") and "oms_fills" in s for s in seen)
    assert any(s.lstrip().startswith("INSERT INTO oms_intents") for s in seen)
    assert _stored(oms_engine) == 1
