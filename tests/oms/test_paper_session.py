"""The execution engine and a paper session through the OMS: targets become deterministic intents (lots,
minimum notional, nothing twice at one bar), and the venue's fills teach the cost model so that the research
simulator's costs move toward what the venue charged (venue on the ``stressed`` preset, research ``default``).
SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ai_trading.data import load_bars
from ai_trading.errors import ReconciliationError
from ai_trading.execution import ExecutionSimulator, MarketArrays, OrderSide, SimOrder, TimeInForce
from ai_trading.execution.cost_feedback import versions
from ai_trading.execution.cost_model import EwmaCostModel
from ai_trading.execution.engine import EngineConfig, ExecutionEngine
from ai_trading.execution.paper import PaperSession, trend_targets
from ai_trading.oms.brokers.paper import PaperBroker
from ai_trading.oms.db import make_engine
from ai_trading.oms.intent_store import IntentStore
from ai_trading.oms.models import OrderState, Side
from ai_trading.oms.submission import OrderManager
from ai_trading.wiring import ResearchConfig, oms_config, research_config
from tests.conftest import compose_config

BARS = load_bars(["NVDA", "ORCL"], start="2003-01-01", end="2003-06-30")
SEED = 5
SIZE = 150_000.0  # under 1% of a day's volume: every order fills whole on its next bar


def _research(state_path: Path | None = None) -> ResearchConfig:
    overrides = [] if state_path is None else [f"cost_model.state_path={state_path}"]
    return research_config(compose_config(overrides))


@pytest.fixture
def venue(venue_dsn: str) -> Iterator[PaperBroker]:
    engine = make_engine(venue_dsn)
    yield PaperBroker(engine, research_config(compose_config(["simulator=stressed"])).simulator, BARS, seed=SEED)
    engine.dispose()


def _engine(store: IntentStore, venue: PaperBroker, **overrides: object) -> ExecutionEngine:
    fields: dict[str, object] = dict(strategy="alt", horizon="1bar", version=1, lot_size=1.0, min_notional=100.0)
    fields.update(overrides)
    return ExecutionEngine(OrderManager(store, venue), EngineConfig(**fields))  # type: ignore[arg-type]


def test_engine_config_defaults_are_the_composed_configs() -> None:
    cfg = oms_config(compose_config())
    assert cfg.engine == EngineConfig(strategy="trend", horizon="1bar", version=1, lot_size=1.0, min_notional=100.0)
    assert cfg.foreign_orders.value == "ignore"


def test_rebalance_rounds_to_lots_skips_small_orders_and_repeats_nothing(store: IntentStore,
                                                                         venue: PaperBroker) -> None:
    engine = _engine(store, venue, lot_size=10.0, min_notional=1_000.0)
    at = datetime(2003, 1, 2, tzinfo=UTC)
    prices = {"NVDA": 4.0, "ORCL": 10.0}
    planned = engine.plan({"NVDA": 1_259.0, "ORCL": 99.0}, prices, at)
    # NVDA: 1250 (whole lots of 10) worth 5000; ORCL: 90 worth 900 < 1000, not sent
    assert [(i.symbol, i.side, i.quantity) for i in planned] == [("NVDA", Side.BUY, Decimal(1250))]
    assert planned == engine.plan({"NVDA": 1_259.0, "ORCL": 99.0}, prices, at)  # same content, same CIDs
    first = engine.rebalance({"NVDA": 1_259.0, "ORCL": 99.0}, prices, at)
    assert [r.state for r in first] == [OrderState.ACKED]
    # the order in flight counts: the same targets again (a restart at this bar) ask for nothing more
    assert engine.rebalance({"NVDA": 1_259.0, "ORCL": 99.0}, prices, at) == []
    venue.advance(1)
    engine.manager.sync()
    assert engine.positions() == {"NVDA": Decimal(1250)}
    sold = engine.rebalance({"NVDA": 0.0}, prices, datetime(2003, 1, 3, tzinfo=UTC))
    assert [(r.intent.side, r.intent.quantity) for r in sold] == [(Side.SELL, Decimal(1250))]


def test_session_refuses_to_trade_before_reconciling(store: IntentStore, venue: PaperBroker) -> None:
    session = PaperSession(_engine(store, venue), venue, trend_targets(100.0))
    with pytest.raises(ReconciliationError, match="reconciliation"):
        session.step()


def _cost_bps(symbol: str, side: str, price: float, when: pd.Timestamp) -> float:
    arrival = float(BARS.loc[(when, symbol), "open"])
    return (1 if side == "buy" else -1) * (price - arrival) / arrival * 1e4


def _simulated_cost_bps(research: ResearchConfig, orders: list[SimOrder]) -> float:
    model = EwmaCostModel.from_config(research.cost_model, research.simulator)
    results = ExecutionSimulator(research.simulator, BARS, cost_model=model, seed=SEED).execute_many(orders)
    return float(np.mean([_cost_bps(r.order.symbol, r.order.side.value, f.price, f.time)
                          for r in results for f in r.fills]))


def test_paper_session_moves_the_simulators_costs_to_the_venues(store: IntentStore, venue: PaperBroker,
                                                                tmp_path: Path) -> None:
    before = _research()
    state = tmp_path / "cost" / "cost_model.json"
    model = EwmaCostModel.from_config(before.cost_model, before.simulator)
    engine = ExecutionEngine(OrderManager(store, venue), EngineConfig("alt", "1bar", 1, 1.0, 100.0),
                             cost_model=model, market=MarketArrays.from_bars(BARS, before.simulator),
                             quotes=venue.market, cost_state_path=state)
    session = PaperSession(engine, venue, lambda market, t: {s: SIZE if t % 2 == 0 else 0.0 for s in market.symbols})
    session.start()
    steps = session.run(bars=80)
    assert steps == 80
    fills = store.fills_after(0, "alt")
    assert len(fills) == 2 * steps  # one whole fill per symbol and bar
    assert [s.version for s in session.saved] == list(range(1, steps + 1))  # a new version after every bar
    assert [n for n, _ in versions(state)] == list(range(1, steps + 1))

    venue_bps = float(np.mean([_cost_bps(f.symbol, f.side.value, float(f.fill.price), pd.Timestamp(f.fill.timestamp))
                               for f in fills]))
    orders = []
    for f in fills:
        record = store.get(f.client_order_id)
        orders.append(SimOrder(f.symbol, OrderSide(f.side.value), float(record.intent.quantity),
                               pd.Timestamp(record.intent.created_at), time_in_force=TimeInForce.GTC))
    before_bps = _simulated_cost_bps(before, orders)
    after_bps = _simulated_cost_bps(_research(session.saved[-1].path), orders)
    assert venue_bps > 1.5 * before_bps > 0  # the stressed venue costs far more than the default preset says
    # 80 fill reports per symbol at a half-life of 50 close 1 - 0.5 ** (80 / 50) = 67% of the gap
    assert before_bps < after_bps < venue_bps
    assert abs(after_bps - venue_bps) < 0.5 * abs(before_bps - venue_bps)

    # a restarted engine resumes from the recorded version and learns no fill twice
    resumed = ExecutionEngine(OrderManager(store, venue), EngineConfig("alt", "1bar", 1, 1.0, 100.0),
                              cost_model=EwmaCostModel(before.cost_model, before.simulator),
                              market=MarketArrays.from_bars(BARS, before.simulator), quotes=venue.market,
                              cost_state_path=state)
    assert resumed.learned_through == fills[-1].id
    assert resumed.cost_model is not None and resumed.cost_model.state_hash == model.state_hash
    assert resumed.learn_costs() is None
