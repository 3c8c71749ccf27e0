"""The simulated backtest: cash and equity reconcile with the fills, net = gross - costs, date ranges."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from ai_trading.data import load_bars
from ai_trading.errors import EvaluationError
from ai_trading.evaluation.backtest import backtest, periods_per_year, segment_metrics
from ai_trading.evaluation.slo import SLOConfig, check_backtests
from ai_trading.execution import SimulatorConfig
from ai_trading.execution.market import build_execution

CASH = 1_000_000.0


@pytest.fixture(scope="module")
def two_stocks() -> pd.DataFrame:
    return load_bars(["NVDA", "ORCL"], start="2010-01-01", end="2011-12-31")


def _weights(T: int, N: int, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(-0.6, 0.6, (T, N))


def _close_wide(bars: pd.DataFrame) -> pd.DataFrame:
    return bars["close"].unstack("symbol").sort_index().ffill()


def test_backtest_cash_rebuilt_from_fills_reconciles_every_period(two_stocks: pd.DataFrame) -> None:
    market, params = build_execution(two_stocks, SimulatorConfig())
    T, N = market.shape
    res = backtest(market, params, _weights(T, N), initial_cash=CASH, rng=7)
    tr = res.trades
    assert len(tr) > 100
    outlay = (tr["qty"] * tr["price"] + tr["fees"]).groupby(tr["timestamp"]).sum()
    financed = res.financing.reindex(res.cash.index, fill_value=0.0).cumsum()  # checked by hand below
    cash = CASH - outlay.reindex(res.cash.index, fill_value=0.0).cumsum() + financed
    np.testing.assert_allclose(res.cash.to_numpy(), cash.to_numpy(), rtol=0, atol=1e-5 * CASH)
    shares = tr.pivot_table(index="timestamp", columns="symbol", values="qty", aggfunc="sum")
    shares = shares.reindex(index=res.cash.index, columns=["NVDA", "ORCL"], fill_value=0.0).fillna(0.0).cumsum()
    closes = _close_wide(two_stocks).reindex(res.cash.index)[["NVDA", "ORCL"]]
    equity = cash + (shares * closes).sum(axis=1)
    np.testing.assert_allclose(res.equity.to_numpy(), equity.to_numpy(), rtol=1e-9)


def test_backtest_net_equity_below_gross_by_exactly_the_fill_costs(two_stocks: pd.DataFrame) -> None:
    market, params = build_execution(two_stocks, SimulatorConfig())
    T, N = market.shape
    res = backtest(market, params, _weights(T, N), initial_cash=CASH, rng=1)
    tr = res.trades
    # Gross: the same fills at their reference price and no fees.
    gross_cash = CASH - (tr["qty"] * tr["ref"]).groupby(tr["timestamp"]).sum().reindex(res.cash.index,
                                                                                       fill_value=0.0).cumsum()
    gross_cash += res.financing.reindex(res.cash.index, fill_value=0.0).cumsum()  # financing is not a cost
    shares = tr.pivot_table(index="timestamp", columns="symbol", values="qty", aggfunc="sum")
    shares = shares.reindex(index=res.cash.index, columns=["NVDA", "ORCL"]).fillna(0.0).cumsum()
    gross = gross_cash + (shares * _close_wide(two_stocks).reindex(res.cash.index)[["NVDA", "ORCL"]]).sum(axis=1)
    np.testing.assert_allclose(res.gross_equity.to_numpy(), gross.to_numpy(), rtol=1e-9)
    fill_costs = float((tr["spread"] + tr["impact"] + tr["fees"]).sum())
    assert fill_costs > 0
    assert res.gross_equity.iloc[-1] - res.equity.iloc[-1] == pytest.approx(fill_costs, rel=1e-9)
    assert res.metrics["cost_total"] == pytest.approx(fill_costs, rel=1e-9)
    assert res.metrics["total_return"] < res.gross_metrics["total_return"]


def test_backtest_zero_cost_simulator_net_equals_gross(two_stocks: pd.DataFrame) -> None:
    config = SimulatorConfig(spread_bps=0.0, spread_vol_coef=0.0, min_half_spread_bps=0.0, max_half_spread_bps=0.0,
                             latency="constant", latency_ms=0.0, spike_prob=0.0, slippage_fixed_bps=0.0,
                             slippage_vol_coef=0.0, impact_coef=0.0, fee_bps=0.0)
    market, params = build_execution(two_stocks, config)
    res = backtest(market, params, _weights(*market.shape), initial_cash=CASH)
    assert res.total_costs == 0.0
    np.testing.assert_array_equal(res.equity.to_numpy(), res.gross_equity.to_numpy())
    # fills at the next bar's open
    opens = two_stocks["open"].unstack("symbol")
    first = res.trades.iloc[0]
    assert first["price"] == opens.loc[first["timestamp"], first["symbol"]]


def test_backtest_symbol_whose_data_ends_is_flattened_on_its_last_bar() -> None:
    bars = load_bars(["SP500", "YHOO"], start="2015-06-01", end="2016-06-30")  # YHOO ends 2015-12-31
    market, params = build_execution(bars, SimulatorConfig())
    res = backtest(market, params, np.full(market.shape, 0.5), initial_cash=CASH)
    yhoo_last = bars.xs("YHOO", level="symbol").index[-1]
    assert res.positions["YHOO"].loc[yhoo_last] == 0.0
    assert res.positions["YHOO"].loc[:yhoo_last].iloc[:-1].abs().max() > 0
    assert (res.trades.loc[res.trades["symbol"] == "YHOO", "timestamp"] <= yhoo_last).all()
    assert res.positions["SP500"].iloc[-1] > 0


def test_backtest_nan_target_raises_evaluation_error(two_stocks: pd.DataFrame) -> None:
    market, params = build_execution(two_stocks, SimulatorConfig())
    w = np.zeros(market.shape)
    w[5, 1] = np.nan
    with pytest.raises(EvaluationError, match="NaN"):
        backtest(market, params, w, initial_cash=CASH)


def test_periods_per_year_daily_is_252_and_minute_bars_use_bars_per_session() -> None:
    daily = pd.DatetimeIndex(pd.bdate_range("2020-01-01", periods=30, tz="UTC"))
    assert periods_per_year(daily) == 252.0
    days = pd.bdate_range("2020-01-06", periods=3)
    minutes = pd.DatetimeIndex([d + pd.Timedelta(hours=14, minutes=30 + i) for d in days for i in range(390)])
    assert periods_per_year(minutes) == 252.0 * 390


def test_segment_metrics_total_return_is_equity_ratio_of_the_segment(two_stocks: pd.DataFrame) -> None:
    market, params = build_execution(two_stocks, SimulatorConfig())
    res = backtest(market, params, _weights(*market.shape), initial_cash=CASH, rng=2)
    net, gross = segment_metrics(res, 100, 250)
    e = res.equity.to_numpy()
    assert net["total_return"] == pytest.approx(e[250] / e[100] - 1.0, rel=1e-9)
    costs = res.costs.to_numpy().sum(axis=1)
    # gross of a segment: its own costs added back, from the segment's starting equity
    assert gross["total_return"] == pytest.approx((e[250] + costs[100:250].sum()) / e[100] - 1.0, rel=1e-9)
    assert gross["total_return"] > net["total_return"]
    assert net["n_periods"] == 150


def test_backtest_long_short_financing_per_period_is_the_interest_on_the_book_held(
        two_stocks: pd.DataFrame) -> None:
    config = SimulatorConfig()
    market, params = build_execution(two_stocks, config)
    targets = np.tile([1.4, -0.1], (market.shape[0], 1))  # 150 % gross, 130 % net: borrowed cash and a short
    res = backtest(market, params, targets, initial_cash=CASH, rng=4)
    # Recomputed from the book at each previous close, the bundled closes and the calendar days between bars.
    cash = res.cash.to_numpy()[:-1]
    closes = _close_wide(two_stocks).reindex(res.cash.index)[list(res.positions.columns)].to_numpy()[:-1]
    short_value = (np.maximum(-res.positions.to_numpy()[:-1], 0.0) * closes).sum(axis=1)
    days = np.asarray((res.equity.index[1:] - res.equity.index[:-1]) / pd.Timedelta(days=1))
    rate = np.where(cash >= 0, config.risk_free_annual_bps, config.risk_free_annual_bps
                    + config.margin_spread_annual_bps) * 1e-4
    expected = days / 365.0 * (rate * cash - config.borrow_fee_annual_bps * 1e-4 * short_value)
    assert (cash[1:] < 0).any() and (short_value[1:] > 0).all()
    np.testing.assert_allclose(res.financing.to_numpy(), expected, rtol=1e-9)
    assert res.financing.index.equals(res.costs.index)
    total = float(res.financing.sum())
    assert total < 0
    assert res.metrics["financing_total"] == res.gross_metrics["financing_total"] == pytest.approx(total, rel=1e-12)
    # Financing is in both curves: gross stays net plus the execution costs only.
    np.testing.assert_allclose(res.gross_equity - res.equity, np.concatenate(([0.0], res.costs.sum(axis=1).cumsum())),
                               rtol=1e-9)
    net, gross = segment_metrics(res, 100, 250)
    assert net["financing_total"] == gross["financing_total"] == pytest.approx(res.financing.iloc[100:250].sum())


def test_backtest_cash_sharpe_is_in_excess_of_the_rate_it_earns_so_about_zero() -> None:
    bars = load_bars(["SP500"], start="2008-01-01", end="2012-12-31")
    config = SimulatorConfig()
    market, params = build_execution(bars, config)
    res = backtest(market, params, np.zeros(market.shape), initial_cash=CASH, name="cash")
    assert res.metrics["total_return"] > 0.05  # five years of interest
    # A steady carry over its small weekend-driven dispersion would be a Sharpe of ~26.
    assert abs(res.metrics["sharpe"]) < 0.2
    assert check_backtests({"cash": res}, SLOConfig()) == []
    held = backtest(market, params, np.full(market.shape, 0.5), initial_cash=CASH)
    r = held.equity.pct_change().to_numpy()[1:]
    excess = r - math.expm1(config.risk_free_annual_bps * 1e-4 / 252.0)
    assert held.metrics["sharpe"] == pytest.approx(excess.mean() / excess.std(ddof=1) * math.sqrt(252), rel=1e-9)
