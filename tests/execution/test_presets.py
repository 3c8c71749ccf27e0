"""Each simulator preset charges what it says, on every path, built exactly as the entrypoints build it
(composed config -> typed configs -> ``build_costs`` -> ``build_execution``), on bundled data."""

from __future__ import annotations

from functools import cache

import numpy as np
import pandas as pd
import pytest

from ai_trading.evaluation.backtest import BacktestResult, backtest
from ai_trading.evaluation.strategies import make_strategy
from ai_trading.evaluation.walkforward import WalkForwardConfig, run_walkforward
from ai_trading.execution import ExecutionSimulator, OrderSide, SimOrder, TimeInForce
from ai_trading.execution.cost_model import EwmaCostModel
from ai_trading.pipeline import Dataset, Execution, build_costs, build_dataset
from ai_trading.rl_trading import EnvData, PortfolioEnv
from ai_trading.wiring import TrainConfig, train_config
from tests.conftest import compose_config

INTRADAY = ("experiment=intraday_stoxx",)


@cache
def _job(*overrides: str) -> TrainConfig:
    return train_config(compose_config(list(overrides)))


@cache
def _dataset(*data_overrides: str) -> Dataset:
    research = _job(*data_overrides).research
    return build_dataset(research.data, research.features)


def _built(preset: str, *data_overrides: str) -> tuple[TrainConfig, Dataset, Execution]:
    config = _job(*data_overrides, f"simulator={preset}")
    dataset = _dataset(*data_overrides)
    return config, dataset, build_costs(dataset, config.research.simulator, config.research.cost_model)


def _flip_targets(shape: tuple[int, int], bars: int) -> np.ndarray:
    """Half the book in every symbol on even bars, flat on odd ones: a trade on every bar."""
    targets = np.zeros(shape)
    targets[:bars:2] = 0.5 / shape[1]
    return targets


def _flip_backtest(execution: Execution, bars: int = 400) -> BacktestResult:
    market = execution.market
    return backtest(market, execution.params, _flip_targets(market.shape, bars), initial_cash=1_000_000.0, rng=0)


def _per_fill(result: BacktestResult, execution: Execution) -> pd.DataFrame:
    """Each fill with the realised half-spread and impact (fractions of the reference price), and the
    decision row's volatility and the fill bar's volume that the preset's formula uses."""
    market = execution.market
    trades = result.trades
    rows = market.timestamps.get_indexer(pd.DatetimeIndex(trades["timestamp"]))
    cols = [market.symbols.index(s) for s in trades["symbol"]]
    base = trades["qty"].abs() * trades["ref"]
    return pd.DataFrame({"hs": trades["spread"] / base, "impact": trades["impact"] / base,
                         "fee_rate": trades["fees"] / trades["notional"], "sigma": market.vol[rows - 1, cols],
                         "participation": trades["qty"].abs().to_numpy() / market.volume[rows, cols],
                         "row": rows, "symbol": trades["symbol"]})


@pytest.mark.parametrize("preset", ["default", "stressed"])
def test_daily_preset_realises_its_quoted_half_spread_slippage_impact_and_fees(preset: str) -> None:
    config, _, execution = _built(preset)
    sim = config.research.simulator
    fills = _per_fill(_flip_backtest(execution), execution)
    assert len(fills) > 300
    expected_hs = np.clip(0.5 * sim.spread_bps * 1e-4 + sim.spread_vol_coef * fills["sigma"],
                          sim.min_half_spread_bps * 1e-4, sim.max_half_spread_bps * 1e-4)
    np.testing.assert_allclose(fills["hs"], expected_hs, rtol=1e-9)
    expected_impact = (sim.slippage_fixed_bps * 1e-4 + sim.slippage_vol_coef * fills["sigma"]
                       + sim.impact_coef * fills["sigma"] * np.sqrt(fills["participation"]))
    np.testing.assert_allclose(fills["impact"], expected_impact, rtol=1e-9)
    np.testing.assert_allclose(fills["fee_rate"], sim.fee_bps * 1e-4, rtol=1e-9)


def test_stressed_costs_the_documented_multiples_of_default_on_the_same_fills() -> None:
    _, _, default = _built("default")
    _, _, stressed = _built("stressed")
    a = _per_fill(_flip_backtest(default), default).set_index(["row", "symbol"])
    b = _per_fill(_flip_backtest(stressed), stressed).set_index(["row", "symbol"])
    both = a.add_suffix("_default").join(b.add_suffix("_stressed"), how="inner")
    assert len(both) > 300
    np.testing.assert_allclose(both["hs_stressed"] / both["hs_default"], 3.0, rtol=1e-9)  # half-spread x3
    np.testing.assert_allclose(both["fee_rate_stressed"] / both["fee_rate_default"], 2.0, rtol=1e-9)  # fees x2
    # Slippage and impact x2 at the same participation (sizes differ by the equity the costs took).
    ratio = both["impact_stressed"] / both["impact_default"]
    assert ratio.between(1.98, 2.02).all(), ratio.describe()


def test_intraday_preset_estimates_half_spreads_bar_by_bar() -> None:
    config, _, execution = _built("intraday", *INTRADAY)
    sim = config.research.simulator
    assert sim.spread_bps is None and sim.spread_estimator == "corwin_schultz"
    fills = _per_fill(_flip_backtest(execution, bars=3000), execution)
    assert len(fills) > 1000
    hs_bps = fills["hs"] * 1e4
    p5, p95 = np.percentile(hs_bps, [5, 95])
    # A flat quoted spread varies only with the small volatility term; the estimator moves with the bars.
    assert p95 / p5 > 1.5, (p5, p95)
    assert hs_bps.nunique() > len(hs_bps) // 2


def test_zero_cost_charges_exactly_nothing_on_every_path() -> None:
    config, dataset, execution = _built("zero_cost")
    research = config.research
    market = execution.market
    # vectorised (backtests, baselines, evaluation replays)
    result = _flip_backtest(execution)
    assert len(result.trades) > 300
    assert result.total_costs == 0.0
    np.testing.assert_array_equal(result.trades["price"], result.trades["ref"])
    rows = market.timestamps.get_indexer(pd.DatetimeIndex(result.trades["timestamp"]))
    cols = [market.symbols.index(s) for s in result.trades["symbol"]]
    np.testing.assert_array_equal(result.trades["price"], market.open[rows, cols])  # the arrival price
    # per-order (the paper venue), with the cost model the entrypoint builds
    sim = ExecutionSimulator(research.simulator, dataset.bars.frame,
                             cost_model=EwmaCostModel.from_config(research.cost_model, research.simulator), seed=0)
    orders = [SimOrder(symbol, OrderSide.BUY if k % 2 else OrderSide.SELL, 10.0 + k, market.timestamps[50 + 7 * k],
                       time_in_force=TimeInForce.DAY)
              for k in range(100) for symbol in market.symbols]
    filled = [r for r in sim.execute_many(orders) if r.fills]
    assert len(filled) > 150
    for r in filled:
        assert r.spread_cost == r.impact_cost == r.fees == 0.0
        assert all(f.price == r.arrival_price for f in r.fills)
    # RL env (training and evaluation episodes)
    data = EnvData.build(market, execution.params, dataset.features, config.env.eval_fraction)
    env = PortfolioEnv(data, config.env)
    env.reset(seed=3)
    rng = np.random.default_rng(4)
    done = False
    while not done:
        _, _, terminated, truncated, _ = env.step(rng.uniform(0.0, 1.0, data.n_symbols).astype(np.float32))
        done = terminated or truncated
    record = env.episode_record()
    assert np.count_nonzero(record.qty) > 100
    assert not record.spread.any() and not record.impact.any() and not record.fee.any()
    # walk-forward (strategy and baselines)
    strategy = make_strategy(_job("simulator=zero_cost").trend)
    wf = run_walkforward(market, execution.params, dataset.features, strategy,
                         WalkForwardConfig(n_folds=2, train_bars=300, show_progress=False))
    for name, res in wf.results.items():
        assert res.total_costs == 0.0, name
        assert res.metrics["total_return"] == res.gross_metrics["total_return"], name
