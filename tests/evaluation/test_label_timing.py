"""The ML label is the return the simulated trade earns: a position decided at bar t's close and held h bars,
replayed through the zero-cost simulator composed as the evaluation job composes it, realises exactly the
label the ML strategy trains on for row t; the close-to-close return does not."""

from __future__ import annotations

import numpy as np
import pytest
from hydra.utils import instantiate

from ai_trading.data import load_bars
from ai_trading.evaluation.strategies import StrategyInputs, training_labels
from ai_trading.execution import ExecParams, SimulatorConfig, build_execution, run_targets
from ai_trading.execution.timing import execution_row, holding_end_row, holding_log_returns
from ai_trading.features import FeatureBuilder
from tests.conftest import compose_config

SHARES = 10.0


@pytest.fixture(scope="module")
def nasdaq() -> tuple[StrategyInputs, ExecParams]:
    bars = load_bars(["NASDAQ"], start="2010-01-01", end="2012-12-31")
    sim_config = instantiate(compose_config(["simulator=zero_cost"], config_name="evaluate").simulator)
    assert isinstance(sim_config, SimulatorConfig) and sim_config.latency_ms == 0.0
    market, params = build_execution(bars, sim_config)
    return StrategyInputs.build(market, FeatureBuilder.default().build(bars), market.frequency.periods_per_year), params


def _replay(inputs: StrategyInputs, params: ExecParams, t: int, h: int) -> float:
    """Log return realised by SHARES shares decided at row t's close, held h bars, then flattened."""
    market = inputs.market
    T = market.open.shape[0]
    targets = np.zeros((T, 1))
    targets[t:t + h, 0] = SHARES
    seq = run_targets(market, params, targets, np.random.default_rng(0), initial_cash=1e6, targets_are_weights=False)
    buy, sell = execution_row(t), holding_end_row(t, h)
    assert seq.qty[buy, 0] == SHARES and seq.qty[sell, 0] == -SHARES  # the whole position traded, in and out
    assert np.count_nonzero(seq.qty) == 2
    pnl = seq.equity[sell] - seq.equity[t]
    return float(np.log1p(pnl / (SHARES * seq.price[buy, 0])))


@pytest.mark.parametrize(("t", "h"), [(300, 1), (301, 1), (450, 1), (310, 3), (500, 5), (620, 10)])
def test_ml_label_equals_the_replayed_trades_return_and_close_to_close_does_not(
        nasdaq: tuple[StrategyInputs, ExecParams], t: int, h: int) -> None:
    inputs, params = nasdaq
    market = inputs.market
    assert market.volume[[execution_row(t), holding_end_row(t, h)], 0].min() > 0  # the fills can happen
    labels = training_labels(inputs, h, 0, market.open.shape[0])
    (at,) = np.flatnonzero(labels.t == t)
    realised = _replay(inputs, params, t, h)
    assert realised == pytest.approx(labels.y[at], rel=1e-12, abs=1e-14)
    assert labels.t1.iloc[at] == market.timestamps[holding_end_row(t, h)]
    close_to_close = np.log(market.close[t + h, 0] / market.close[t, 0])
    assert abs(close_to_close - realised) > 1e-6


def test_holding_return_is_undefined_where_the_symbol_misses_a_bar_or_the_data_end() -> None:
    rng = np.random.default_rng(3)
    T, h = 12, 2
    open_ = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.01, (T, 2)), axis=0))
    tradable = np.ones((T, 2), dtype=bool)
    tradable[6, 1] = False
    y, end = holding_log_returns(open_, tradable, h)
    expected = np.log(open_[h + 1:, 0] / open_[1:T - h, 0])
    np.testing.assert_allclose(y[:T - h - 1, 0], expected, rtol=1e-15)
    assert (end[:T - h - 1, 0] == np.arange(T - h - 1) + h + 1).all()
    assert np.isnan(y[T - h - 1:]).all() and (end[T - h - 1:] == -1).all()
    # rows t .. t+h+1 must all hold a bar: decisions at 3, 4, 5 and 6 span row 6
    assert np.isnan(y[3:7, 1]).all() and (end[3:7, 1] == -1).all()
    assert np.isfinite(y[[0, 1, 2, 7, 8], 1]).all()
