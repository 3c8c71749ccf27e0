"""The cost model's feedback loop over a paper session: a venue that costs more than the research preset
says teaches the cost model, and the next research run (loading the new state version by
``cost_model.state_path``) charges what the venue charged. Versions are never overwritten."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import Engine

from ai_trading.data import load_bars
from ai_trading.errors import DataValidationError
from ai_trading.execution import ExecutionSimulator, MarketArrays, OrderSide, SimOrder, TimeInForce
from ai_trading.execution.cost_feedback import fill_observations, learn_from_fills, versions
from ai_trading.execution.cost_model import EwmaCostModel, EwmaCostModelConfig
from ai_trading.oms.brokers.base import BrokerFill, OrderRequest
from ai_trading.oms.brokers.paper import PaperBroker
from ai_trading.oms.db import make_engine, upgrade_to_head
from ai_trading.oms.models import Side
from ai_trading.wiring import ResearchConfig, research_config
from tests.conftest import compose_config

BARS = load_bars(["NVDA", "ORCL"], start="2003-01-01", end="2003-12-31")
STAMPS = pd.DatetimeIndex(sorted(set(BARS.index.get_level_values("timestamp"))))
SESSION_BARS = 150
SEED = 5


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    dsn = f"sqlite:///{tmp_path / 'venue.db'}" if request.param == "sqlite" \
        else request.getfixturevalue("postgres_database")
    engine = make_engine(dsn)
    upgrade_to_head(engine)
    yield engine
    engine.dispose()


def _research(state_path: Path) -> ResearchConfig:
    """What the next research run builds from its composed config (the default preset, the learned state)."""
    return research_config(compose_config([f"cost_model.state_path={state_path}"]))


def _orders() -> dict[int, list[OrderRequest]]:
    """Each bar, 150k shares of each symbol (under 1% of a day's volume), alternating buys and sells."""
    session = {}
    for bar in range(SESSION_BARS):
        side = Side.BUY if bar % 2 == 0 else Side.SELL
        session[bar] = [OrderRequest(f"{bar}-{s}", s, side, 150_000.0) for s in ("NVDA", "ORCL")]
    return session


def _cost_bps(symbol: str, side: str, price: float, when: pd.Timestamp) -> float:
    """Realised cost of a fill against its bar's open (the arrival price), in bps, read from the bars."""
    arrival = float(BARS.loc[(when, symbol), "open"])
    return (1 if side == "buy" else -1) * (price - arrival) / arrival * 1e4


def _venue_session(engine: Engine) -> tuple[PaperBroker, list[BrokerFill]]:
    venue_preset = research_config(compose_config(["simulator=stressed"])).simulator
    venue = PaperBroker(engine, venue_preset, BARS, seed=SEED)
    for bar, requests in _orders().items():
        assert venue.clock == STAMPS[bar]  # decided at this bar's close, as the simulation's orders
        for request in requests:
            venue.submit(request)
        venue.advance()
    return venue, venue.list_fills()


def _simulated_cost_bps(research: ResearchConfig) -> float:
    """Mean realised cost of the session's orders in a research simulation with the run's cost model."""
    model = EwmaCostModel.from_config(research.cost_model, research.simulator)
    sim = ExecutionSimulator(research.simulator, BARS, cost_model=model, seed=SEED)
    orders = [SimOrder(r.symbol, OrderSide(r.side.value), r.quantity, STAMPS[bar], time_in_force=TimeInForce.GTC)
              for bar, rs in _orders().items() for r in rs]
    results = sim.execute_many(orders)
    costs = [_cost_bps(r.order.symbol, r.order.side.value, f.price, f.time) for r in results for f in r.fills]
    return float(np.mean(costs))


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values))


def test_paper_session_moves_research_costs_to_the_venues(engine: Engine, tmp_path: Path) -> None:
    base = tmp_path / "cost" / "cost_model.json"
    base.parent.mkdir()
    before = _research(base)
    EwmaCostModel(before.cost_model, before.simulator).save(base)  # the state the research runs use today
    base_bytes = base.read_bytes()
    base_hash = EwmaCostModel.load(base, before.cost_model, before.simulator).state_hash

    venue, fills = _venue_session(engine)
    assert len(fills) == 2 * SESSION_BARS  # every order fills whole on its next bar
    venue_bps = _mean([_cost_bps(f.symbol, f.side.value, f.price, pd.Timestamp(f.timestamp)) for f in fills])
    before_bps = _simulated_cost_bps(before)
    assert venue_bps > 1.5 * before_bps > 0  # the stressed venue costs far more than the default preset says

    model = EwmaCostModel.from_config(before.cost_model, before.simulator)
    research_market = MarketArrays.from_bars(BARS, before.simulator)
    saved = learn_from_fills(model, fills, research_market, base, quotes=venue.market)

    # The stressed preset's half-spread is 3x the default's (conf/simulator/stressed.yaml), on every fill: the
    # EWMA of SESSION_BARS reports per symbol moves from 1 towards 3 by 1 - 0.5 ** (reports / half-life).
    learned = 1.0 + 2.0 * (1.0 - 0.5 ** (SESSION_BARS / before.cost_model.half_life))
    for symbol in ("NVDA", "ORCL"):
        assert model.spread_scale(symbol) == pytest.approx(learned, rel=1e-9)
        assert 1.5 < model.impact_scale(symbol) < 3.0  # its slippage is 2x, plus the longer latency's drift
    after = _research(saved.path)
    after_bps = _simulated_cost_bps(after)
    assert abs(after_bps - venue_bps) < 0.25 * abs(before_bps - venue_bps)

    # A new version beside the old one; the old file and its hash untouched.
    assert saved.path == base.with_name("cost_model.v0001.json") and saved.version == 1
    assert base.read_bytes() == base_bytes
    assert EwmaCostModel.load(base, before.cost_model, before.simulator, expected_sha256=base_hash).state_hash \
        == base_hash
    assert saved.sha256 != base_hash
    assert EwmaCostModel.load(saved.path, after.cost_model, after.simulator, expected_sha256=saved.sha256)

    # Learning again from the new version writes version 2; version 1 stays as it was.
    v1_bytes = saved.path.read_bytes()
    again = learn_from_fills(EwmaCostModel.from_config(after.cost_model, after.simulator), fills[:10],
                             research_market, saved.path, quotes=venue.market)
    assert again.path == base.with_name("cost_model.v0002.json") and again.version == 2
    assert saved.path.read_bytes() == v1_bytes
    assert [n for n, _ in versions(base)] == [1, 2]


def test_without_quotes_only_the_slippage_multiplier_learns(engine: Engine, tmp_path: Path) -> None:
    research = _research(tmp_path / "unused.json")
    _, fills = _venue_session(engine)
    market = MarketArrays.from_bars(BARS, research.simulator)
    observations = fill_observations(fills, market)
    assert all(o.half_spread_bps is None for o in observations)
    model = EwmaCostModel(EwmaCostModelConfig(half_life=research.cost_model.half_life), research.simulator)
    model.update(observations)
    assert model.spread_scale("NVDA") == 1.0 and model.impact_scale("NVDA") > 2.0  # the spread shows up as slippage


def test_fill_outside_the_market_raises(tmp_path: Path) -> None:
    research = _research(tmp_path / "unused.json")
    market = MarketArrays.from_bars(BARS, research.simulator)
    at = STAMPS[5].to_pydatetime()
    good = BrokerFill("t1", "b1", "c1", "NVDA", Side.BUY, 10.0, 5.0, 0.0, at)
    assert len(fill_observations([good], market)) == 1
    for bad, rule in ((BrokerFill("t2", "b1", "c1", "NVDA", Side.BUY, 10.0, 5.0, 0.0,
                                  (STAMPS[5] + pd.Timedelta("1h")).to_pydatetime()), "fill_bar"),
                      (BrokerFill("t3", "b1", "c1", "NVDA", Side.BUY, 10.0, 5.0, 0.0, STAMPS[0].to_pydatetime()),
                       "fill_bar"),
                      (BrokerFill("t4", "b1", "c1", "MSFT", Side.BUY, 10.0, 5.0, 0.0, at), "fill_symbol")):
        with pytest.raises(DataValidationError) as info:
            fill_observations([bad], market)
        assert info.value.rule == rule
    with pytest.raises(DataValidationError, match="no fills"):
        learn_from_fills(EwmaCostModel(research.cost_model, research.simulator), [], market, tmp_path / "c.json")
