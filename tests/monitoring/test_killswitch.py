"""The kill switch: persisted state and history, the order gate (block all, reduce-only, cancels), surviving a
SIGKILL, the operator CLI, and blocking new orders end to end through the real intent store and paper venue.
Every database test runs on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from ai_trading.data import load_bars
from ai_trading.errors import ConfigError, SchemaRevisionError
from ai_trading.execution import SimulatorConfig
from ai_trading.monitoring.killswitch import KillSwitch, KillSwitchMode
from ai_trading.oms.brokers.base import OrderRequest
from ai_trading.oms.brokers.paper import PaperBroker
from ai_trading.oms.brokers.paper_tables import PaperOrderRow
from ai_trading.oms.db import make_engine
from ai_trading.oms.intent_store import IntentStore
from ai_trading.oms.models import OrderEvent, OrderIntent, Side

ROOT = Path(__file__).resolve().parents[2]
BARS = load_bars(["NVDA"], start="2003-01-01", end="2003-03-31")


def test_a_fresh_switch_is_released_and_allows_every_order(db_engine: Engine) -> None:
    switch = KillSwitch(db_engine)
    state = switch.state()
    assert not state.engaged and state.last is None
    assert switch.allow_new_order(reduces_position=False) and switch.allow_new_order(reduces_position=True)


def test_engage_blocks_every_new_order_and_release_allows_them_again(db_engine: Engine) -> None:
    switch = KillSwitch(db_engine)
    switch.engage("drawdown breach", who="ops")
    assert not switch.allow_new_order(reduces_position=False)
    assert not switch.allow_new_order(reduces_position=True)
    switch.release("investigated", who="ops")
    assert switch.allow_new_order(reduces_position=False)


def test_reduce_only_allows_only_orders_that_reduce_a_position(db_engine: Engine) -> None:
    switch = KillSwitch(db_engine)
    switch.engage("model suspect", who="ops", mode=KillSwitchMode.REDUCE_ONLY)
    assert switch.allow_new_order(reduces_position=True)
    assert not switch.allow_new_order(reduces_position=False)
    switch.engage("worse", who="ops", mode=KillSwitchMode.BLOCK_ALL)  # tightening the mode is a change
    assert not switch.allow_new_order(reduces_position=True)


def test_every_change_is_recorded_with_who_why_when_and_repeats_are_not(db_engine: Engine) -> None:
    switch = KillSwitch(db_engine)
    before = datetime.now(UTC)
    switch.engage("a", who="alice")
    switch.engage("again", who="bob")  # same mode: no change, not recorded
    switch.release("b", who="carol")
    switch.release("again", who="dave")  # already released: not recorded
    history = switch.history()
    assert [(e.action, e.mode, e.who, e.reason) for e in history] == [
        ("release", None, "carol", "b"), ("engage", KillSwitchMode.BLOCK_ALL, "alice", "a")]
    assert all(before <= e.at <= datetime.now(UTC) for e in history)
    assert switch.state().last == history[0]


@pytest.mark.parametrize(("reason", "who"), [("", "ops"), ("   ", "ops"), ("why", ""), ("why", "x" * 129)])
def test_engage_refuses_an_empty_reason_or_who(db_engine: Engine, reason: str, who: str) -> None:
    with pytest.raises(ConfigError, match="kill switch"):
        KillSwitch(db_engine).engage(reason, who=who)
    assert KillSwitch(db_engine).history() == []


def test_switch_refuses_a_database_not_at_head(db_dsn: str) -> None:
    engine = make_engine(db_dsn)
    try:
        with pytest.raises(SchemaRevisionError, match="alembic upgrade head"):
            KillSwitch(engine)
    finally:
        engine.dispose()


# -- end to end: the order path consults the switch before creating an intent --------------------------------
def _send(store: IntentStore, venue: PaperBroker, switch: KillSwitch, n: int, side: Side,
          reduces_position: bool) -> OrderIntent | None:
    """What the execution engine does per target: ask the switch, then intent -> claim -> broker -> ack."""
    if not switch.allow_new_order(reduces_position=reduces_position):
        return None
    intent = store.create(OrderIntent(strategy="momo", symbol="NVDA", side=side, quantity=100,
                                      session="2003-01-02", horizon="1d", signal_hash=f"{n:08x}",
                                      created_at=datetime(2003, 1, 2, 21, tzinfo=UTC)))
    if store.claim_for_submit(intent.client_order_id):
        order = venue.submit(OrderRequest(intent.broker_safe_id, "NVDA", side, 100.0))
        store.record(intent.client_order_id, OrderEvent.acked(order.broker_order_id))
    return intent


def _venue_orders(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(select(PaperOrderRow.client_order_id)).scalars())


def _engage_then_hang(dsn: str, mode: str) -> subprocess.Popen[str]:
    code = ("import sys, time\n"
            "from ai_trading.oms.db import make_engine\n"
            "from ai_trading.monitoring.killswitch import KillSwitch, KillSwitchMode\n"
            "KillSwitch(make_engine(sys.argv[1])).engage('critical alert', who='router', "
            "mode=KillSwitchMode(sys.argv[2]))\n"
            "print('engaged', flush=True)\n"
            "time.sleep(60)\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", code, dsn, mode], stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "engaged"
    return proc


def test_engaged_switch_blocks_new_orders_end_to_end_and_survives_sigkill(db_dsn: str, db_engine: Engine) -> None:
    store, venue = IntentStore(db_engine), PaperBroker(db_engine, SimulatorConfig(), BARS, seed=1)
    first = _send(store, venue, KillSwitch(db_engine), 1, Side.BUY, reduces_position=False)
    assert first is not None and len(_venue_orders(db_engine)) == 1

    proc = _engage_then_hang(db_dsn, "block_all")
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL

    restarted = make_engine(db_dsn)  # a new process's view: a fresh engine and fresh objects
    try:
        switch = KillSwitch(restarted)
        assert switch.state().engaged and switch.state().last is not None
        assert switch.state().last.who == "router"
        store2, venue2 = IntentStore(restarted), PaperBroker(restarted, SimulatorConfig(), BARS, seed=1)
        assert _send(store2, venue2, switch, 2, Side.BUY, reduces_position=False) is None
        assert _send(store2, venue2, switch, 3, Side.SELL, reduces_position=True) is None
        assert len(_venue_orders(restarted)) == 1 and sum(store2.state_counts().values()) == 1
        venue2.cancel(first.broker_safe_id)  # cancels still go out while engaged (the engine never gates them)

        switch.release("resolved", who="ops")
        assert _send(store2, venue2, switch, 4, Side.BUY, reduces_position=False) is not None
        assert len(_venue_orders(restarted)) == 2
    finally:
        restarted.dispose()


def test_reduce_only_switch_lets_only_reducing_orders_reach_the_venue(db_dsn: str, db_engine: Engine) -> None:
    store, venue = IntentStore(db_engine), PaperBroker(db_engine, SimulatorConfig(), BARS, seed=1)
    proc = _engage_then_hang(db_dsn, "reduce_only")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    switch = KillSwitch(db_engine)
    assert _send(store, venue, switch, 1, Side.BUY, reduces_position=False) is None
    sent = _send(store, venue, switch, 2, Side.SELL, reduces_position=True)
    assert sent is not None
    assert len(_venue_orders(db_engine)) == 1


# -- the operator CLI ----------------------------------------------------------------------------------------
def _cli(*args: str, dsn: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "AI_TRADING_OMS_DSN"}
    env["PYTHONPATH"] = str(ROOT)
    if dsn is not None:
        env["AI_TRADING_OMS_DSN"] = dsn
    return subprocess.run([sys.executable, "-m", "ai_trading.killswitch", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def test_cli_engage_status_release_round_trip(db_dsn: str, db_engine: Engine) -> None:
    out = _cli("engage", "--reason", "manual stop", "--who", "alice", "--reduce-only", dsn=db_dsn)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "ENGAGED mode=reduce_only" in out.stdout
    state = KillSwitch(db_engine).state()
    assert state.engaged and state.mode is KillSwitchMode.REDUCE_ONLY and state.last is not None
    assert (state.last.who, state.last.reason) == ("alice", "manual stop")

    out = _cli("status", "--dsn", db_dsn)
    assert out.returncode == 0 and "ENGAGED" in out.stdout and "by alice: manual stop" in out.stdout
    assert "alert outbox: pending 0, sending 0, delivered 0, failed 0" in out.stdout
    out = _cli("release", "--reason", "checked", "--who", "bob", dsn=db_dsn)
    assert out.returncode == 0 and "RELEASED" in out.stdout
    assert not KillSwitch(db_engine).state().engaged


def test_cli_help_and_missing_reason() -> None:
    out = _cli("--help")
    assert out.returncode == 0 and "status" in out.stdout and "engage" in out.stdout
    assert _cli("engage", "--help").stdout.count("--reduce-only") >= 1
    assert _cli("engage").returncode == 2  # --reason is required


def test_cli_refuses_a_database_not_at_head_with_the_upgrade_hint(tmp_path: Path) -> None:
    dsn = f"sqlite:///{tmp_path / 'oms.db'}"
    out = _cli("status", dsn=dsn)
    assert out.returncode == 1 and "alembic upgrade head" in out.stdout
    make_engine(dsn).dispose()
    (tmp_path / "oms.db").touch()
    out = _cli("engage", "--reason", "x", dsn=dsn)
    assert out.returncode == 1 and "alembic upgrade head" in out.stdout


def test_cli_never_prints_the_password() -> None:
    dsn = "postgresql+psycopg://ops:S3cretMarker@127.0.0.1:1/oms"
    out = _cli("status", dsn=dsn)
    assert out.returncode == 3
    assert "S3cretMarker" not in out.stdout + out.stderr and "***" in out.stdout
