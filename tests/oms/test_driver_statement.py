"""Statements run on the driver's cursor (``oms.db.DriverStatement``), which is kept with its connection:
a statement that fails must leave no open result behind, and threads sharing one connection must not
share one cursor."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy import Engine, Integer, bindparam, create_engine, event, func, select
from sqlalchemy.pool import StaticPool

from ai_trading.oms.db import DriverStatement, upgrade_to_head
from ai_trading.oms.intent_store import IntentStore
from ai_trading.oms.tables import IntentRow
from tests.oms.conftest import make_intent


def test_a_statement_interrupted_after_it_ran_leaves_no_open_read_behind(oms_engine: Engine) -> None:
    store = IntentStore(oms_engine)
    store.create(make_intent(1))
    read = DriverStatement(select(func.count()).select_from(IntentRow.__table__), oms_engine.dialect)
    cursors: list[Any] = []

    def interrupt(_conn: Any, cursor: Any, *_: Any) -> None:
        raise KeyboardInterrupt  # an operator's Ctrl-C between the statement and the read of its rows

    event.listen(oms_engine, "before_cursor_execute", lambda _conn, cursor, *_: cursors.append(cursor))
    event.listen(oms_engine, "after_cursor_execute", interrupt)
    with oms_engine.connect() as conn:
        with pytest.raises(KeyboardInterrupt):
            read.rows(conn, {})
        event.remove(oms_engine, "after_cursor_execute", interrupt)
        # the same connection neither holds a read open (a writer and a checkpoint get through) nor reads an
        # old snapshot
        store.create(make_intent(2))
        if oms_engine.dialect.name == "sqlite":
            assert conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").one()[0] == 0  # 0: not blocked
        assert read.rows(conn, {}) == [(2,)]
        assert cursors[-1] is not cursors[0]  # the interrupted statement's cursor was not kept


def test_threads_sharing_one_connection_each_run_on_their_own_cursor(tmp_path: Any) -> None:
    # SQLite's StaticPool hands one driver connection to every thread; one cursor run by two threads at once
    # fails or mixes their results. (SQLite only: make_engine's PostgreSQL pool checks a connection for a
    # server close at checkout, which a connection another thread is waiting on cannot pass.)
    engine = create_engine(f"sqlite:///{tmp_path / 'oms.db'}", poolclass=StaticPool,
                           connect_args={"check_same_thread": False})
    upgrade_to_head(engine)
    statement = DriverStatement(select(bindparam("n", type_=Integer()).label("n")), engine.dialect)
    failures: list[str] = []

    def run(offset: int) -> None:
        try:
            for n in range(offset, offset + 300):
                with engine.connect() as conn:
                    rows = statement.rows(conn, {"n": n})
                if rows != [(n,)]:
                    failures.append(f"{n}: {rows}")
        except Exception as exc:  # every failure is reported by the assertion below
            failures.append(repr(exc))

    try:
        threads = [threading.Thread(target=run, args=(1000 * k,)) for k in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        engine.dispose()
    assert failures == []
