"""Baselines: cash only earns interest, buy-and-hold buys once and holds, the trend rule is causal and vol-targeted."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ai_trading.data import load_bars
from ai_trading.evaluation.backtest import backtest
from ai_trading.evaluation.baselines import TrendConfig, buy_and_hold_weights, cash_weights, trend_weights
from ai_trading.execution import MarketArrays, SimulatorConfig
from ai_trading.execution.market import build_execution

CASH = 1_000_000.0
ZERO_COST = SimulatorConfig(spread_bps=0.0, spread_vol_coef=0.0, min_half_spread_bps=0.0, max_half_spread_bps=0.0,
                            latency="constant", latency_ms=0.0, spike_prob=0.0, slippage_fixed_bps=0.0,
                            slippage_vol_coef=0.0, impact_coef=0.0, fee_bps=0.0)


def _synthetic(closes: np.ndarray, symbol: str = "SYN") -> pd.DataFrame:
    ts = pd.bdate_range("2010-01-04", periods=len(closes), tz="UTC", name="timestamp")
    frame = pd.DataFrame({"open": closes, "high": closes * 1.001, "low": closes * 0.999, "close": closes,
                          "volume": np.full(len(closes), 1e9)}, index=ts)
    return frame.assign(symbol=symbol).set_index("symbol", append=True)


def test_cash_baseline_only_earns_the_risk_free_rate_and_has_no_costs() -> None:
    bars = load_bars(["SP500"], start="2012-01-01", end="2012-12-31")
    config = SimulatorConfig()
    market, params = build_execution(bars, config)
    res = backtest(market, params, cash_weights(market), initial_cash=CASH)
    assert res.total_costs == 0.0 and res.trades.empty
    stamps = bars.index.get_level_values("timestamp")
    days = np.asarray((stamps[1:] - stamps[:-1]) / pd.Timedelta(days=1))
    grown = CASH * np.cumprod(np.concatenate(([1.0], 1.0 + config.risk_free_annual_bps * 1e-4 * days / 365.0)))
    np.testing.assert_allclose(res.equity.to_numpy(), grown, rtol=1e-12)


def test_buy_and_hold_single_index_trades_once_then_tracks_the_index() -> None:
    bars = load_bars(["SP500"], start="2012-01-01", end="2014-12-31")
    market, params = build_execution(bars, ZERO_COST)
    res = backtest(market, params, buy_and_hold_weights(market), initial_cash=CASH)
    close = bars["close"].to_numpy()
    first_fill = res.trades.iloc[0]
    assert first_fill["notional"] == pytest.approx(CASH, rel=0.02)
    later = res.traded_notional.iloc[1:].sum()
    assert later < 0.02 * CASH  # only the residual cash of the first fill is re-invested
    expected = CASH * close[-1] / first_fill["price"]
    assert res.equity.iloc[-1] == pytest.approx(expected, rel=0.02)


def test_buy_and_hold_symbol_starting_later_is_not_bought() -> None:
    bars = load_bars(["ORCL", "NVDA"], start="1998-06-01", end="1999-06-30")  # NVDA lists 1999-01-22
    market = MarketArrays.from_bars(bars, SimulatorConfig())
    w = buy_and_hold_weights(market)
    nvda, orcl = market.symbols.index("NVDA"), market.symbols.index("ORCL")
    assert (w[:, nvda] == 0.0).all()
    assert w[0, orcl] == 1.0


def test_trend_weights_do_not_change_when_future_bars_are_added() -> None:
    full = load_bars(["SP500", "NASDAQ"], start="2005-01-01", end="2009-12-31")
    cut = full.loc[full.index.get_level_values("timestamp") < pd.Timestamp("2008-06-30", tz="UTC")]
    cfg = TrendConfig(lookback=63, vol_window=21)
    w_full = trend_weights(MarketArrays.from_bars(full, SimulatorConfig()), cfg, 252.0)
    w_cut = trend_weights(MarketArrays.from_bars(cut, SimulatorConfig()), cfg, 252.0)
    n = len(w_cut)
    np.testing.assert_array_equal(w_full[:n], w_cut)
    assert np.abs(w_cut).sum() > 0


def test_trend_weight_on_steady_uptrend_is_vol_target_over_realised_vol() -> None:
    steps = np.where(np.arange(299) % 2 == 0, 0.012, -0.008)  # up on average, known dispersion
    closes = 100.0 * np.exp(np.concatenate(([0.0], np.cumsum(steps))))
    market = MarketArrays.from_bars(_synthetic(closes), SimulatorConfig())
    cfg = TrendConfig(lookback=20, vol_window=20, target_vol=0.10, max_leverage=5.0)
    w = trend_weights(market, cfg, 252.0)
    sigma = np.std(steps[:20], ddof=1) * np.sqrt(252.0)  # 20 returns, alternating
    assert (w[:20] == 0.0).all()  # no signal before the lookback
    assert w[150] == pytest.approx(0.10 / sigma, rel=1e-9)
    capped = trend_weights(market, TrendConfig(lookback=20, vol_window=20, target_vol=10.0, max_leverage=1.5), 252.0)
    assert capped[150] == pytest.approx(1.5)


def test_trend_long_only_never_shorts_a_downtrend() -> None:
    closes = 100.0 * np.exp(-0.002 * np.arange(300) + 0.01 * np.sin(np.arange(300)))
    market = MarketArrays.from_bars(_synthetic(closes), SimulatorConfig())
    long_only = trend_weights(market, TrendConfig(lookback=20), 252.0)
    long_short = trend_weights(market, TrendConfig(lookback=20, long_only=False), 252.0)
    assert (long_only == 0.0).all()
    assert (long_short[30:-2] < 0).all()
