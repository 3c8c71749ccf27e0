"""The simulated backtest: cash and equity reconcile with the fills, net = gross - costs, date ranges."""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd
import pytest
from hydra.utils import instantiate

from ai_trading.data import load_bars
from ai_trading.errors import EvaluationError
from ai_trading.evaluation.backtest import backtest, segment_metrics
from ai_trading.evaluation.slo import SLOConfig, check_backtests
from ai_trading.execution import SimulatorConfig
from ai_trading.execution.market import build_execution
from tests.conftest import compose_config

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


def test_backtest_nan_target_raises_evaluation_error(two_stocks: pd.DataFrame) -> None:
    market, params = build_execution(two_stocks, SimulatorConfig())
    w = np.zeros(market.shape)
    w[5, 1] = np.nan
    with pytest.raises(EvaluationError, match="NaN"):
        backtest(market, params, w, initial_cash=CASH)


ZERO_COST: SimulatorConfig = instantiate(compose_config(["simulator=zero_cost"]).simulator)  # no costs, no financing


def _resampled_sp500(rule: str) -> pd.DataFrame:
    """Bundled SP500 daily bars aggregated to ``rule`` (first open, max high, min low, last close, summed volume)."""
    daily = load_bars(["SP500"]).xs("SP500", level="symbol")
    out = daily.resample(rule).agg({"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"})
    out = out.dropna()
    out.index = pd.MultiIndex.from_arrays([out.index, ["SP500"] * len(out)], names=["timestamp", "symbol"])
    return out


@pytest.mark.parametrize(("rule", "per_year"), [("W-FRI", 52), ("ME", 12)])
def test_buy_and_hold_on_resampled_bars_annualises_by_their_frequency(rule: str, per_year: int) -> None:
    # annualised as daily (the old rule for any spacing >= 12 h), the weekly curve of 1999-2018 reported
    # CAGR 0.18 and Sharpe 0.62 instead of 0.034 and 0.28; the monthly one 1.03 and 1.41
    bars = _resampled_sp500(rule)
    market, params = build_execution(bars, ZERO_COST)
    res = backtest(market, params, np.ones(market.shape), initial_cash=CASH)
    # the known answer from the bars alone: fully invested from bar 1's open (the first fill) to the last close
    o, c = bars["open"].to_numpy(), bars["close"].to_numpy()
    stamps = bars.index.get_level_values("timestamp")
    years = (stamps[-1] - stamps[0]) / pd.Timedelta(days=365.25)
    cagr = (c[-1] / o[1]) ** (1.0 / years) - 1.0
    returns = np.concatenate(([c[1] / o[1] - 1.0], c[2:] / c[1:-1] - 1.0))
    sharpe = returns.mean() / returns.std(ddof=1) * np.sqrt(per_year)
    assert res.periods_per_year == per_year
    assert res.metrics["annualized_return"] == pytest.approx(cagr, abs=0.002)
    assert res.metrics["sharpe"] == pytest.approx(sharpe, rel=1e-9)


def test_backtest_ppy_argument_overrides_the_market_frequency(two_stocks: pd.DataFrame) -> None:
    market, params = build_execution(two_stocks, SimulatorConfig())
    assert backtest(market, params, _weights(*market.shape), initial_cash=CASH).periods_per_year == 252.0
    assert backtest(market, params, _weights(*market.shape), initial_cash=CASH, ppy=12.0).periods_per_year == 12.0


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


def test_backtest_symbol_whose_data_end_is_not_flattened_early_but_held_and_marked_at_its_last_close(
        caplog: pytest.LogCaptureFixture) -> None:
    bars = load_bars(["SP500", "YHOO"], start="2015-06-01", end="2016-06-30")  # YHOO ends 2015-12-31
    market, params = build_execution(bars, SimulatorConfig())
    yhoo = bars.xs("YHOO", level="symbol")
    second_last, last = yhoo.index[-2], yhoo.index[-1]
    ts = market.timestamps
    assert last < ts[-1]  # the window runs on after YHOO's data end
    # YHOO's target steps up on its second-to-last bar: that decision executes on its last bar.
    targets = np.full(market.shape, 0.5)
    targets[ts < second_last, list(market.symbols).index("YHOO")] = 0.2
    with caplog.at_level(logging.INFO, logger="ai_trading.evaluation.backtest"):
        res = backtest(market, params, targets, initial_cash=CASH)
    assert res.targets["YHOO"].loc[second_last] == 0.5  # a data end is not known a bar early
    bought = res.trades[(res.trades["symbol"] == "YHOO") & (res.trades["timestamp"] == last)]
    assert len(bought) == 1 and bought["qty"].iloc[0] > 0
    held = res.positions["YHOO"].loc[last:]
    assert held.iloc[0] > 0 and (held == held.iloc[0]).all()
    assert not (res.trades["symbol"].eq("YHOO") & (res.trades["timestamp"] > last)).any()
    # After its data end the position is marked at YHOO's last close.
    after = res.equity.index > last
    sp500 = bars.xs("SP500", level="symbol")["close"].reindex(res.equity.index)[after]
    marked = res.cash[after] + res.positions["SP500"][after] * sp500 + held.iloc[0] * yhoo["close"].iloc[-1]
    np.testing.assert_allclose(res.equity[after].to_numpy(), marked.to_numpy(), rtol=1e-12)
    assert any("held after their data end" in r.getMessage() and "YHOO" in r.getMessage()
               for r in caplog.records if r.levelno == logging.INFO)


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
