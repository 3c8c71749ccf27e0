"""Spread and volatility estimators: a hand-computed Corwin-Schultz case and real STOXX50F bars."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ai_trading.data import load_bars
from ai_trading.execution import MarketArrays, SimulatorConfig
from ai_trading.execution.spread import abdi_ranaldo, corwin_schultz, ewma_volatility


def test_corwin_schultz_two_bars_hand_computed() -> None:
    high, low, close = np.array([101.0, 101.5]), np.array([99.0, 99.5]), np.array([100.0, 100.5])
    b = math.log(101 / 99) ** 2 + math.log(101.5 / 99.5) ** 2
    g = math.log(101.5 / 99) ** 2
    k = 3 - 2 * math.sqrt(2)
    a = (math.sqrt(2 * b) - math.sqrt(b)) / k - math.sqrt(g / k)
    expected = max(2 * (math.exp(a) - 1) / (1 + math.exp(a)), 0.0)
    out = corwin_schultz(high, low, close, window=5)
    assert math.isnan(out[0])
    assert out[1] == pytest.approx(expected, rel=1e-12)


def test_corwin_schultz_gap_up_adjusts_range_to_previous_close() -> None:
    # Bar 2 trades wholly above bar 1's close (low 103 > close 99.1): its range is shifted down by the gap
    # of 3.9 points to [99.1, 101.1], the estimate of a bar that opened at the previous close.
    gap = corwin_schultz(np.array([101.0, 105.0]), np.array([99.0, 103.0]), np.array([99.1, 104.0]), 1)
    flat = corwin_schultz(np.array([101.0, 101.1]), np.array([99.0, 99.1]), np.array([99.1, 100.0]), 1)
    assert gap[1] > 0
    assert gap[1] == pytest.approx(flat[1], rel=1e-9)


def test_abdi_ranaldo_constant_bounce_recovers_spread() -> None:
    # Close alternates at the bid/ask around a fixed mid range: c - eta = +-s/2 -> products -(s/2)^2 ... and the
    # estimator is non-negative by construction; a close always at the top of a fixed range gives s = range.
    n = 50
    high, low = np.full(n, 100.1), np.full(n, 99.9)
    close = np.full(n, 100.1)
    s = abdi_ranaldo(high, low, close, window=10)
    eta = 0.5 * (math.log(100.1) + math.log(99.9))
    assert s[-1] == pytest.approx(2 * abs(math.log(100.1) - eta), rel=1e-9)


def test_ewma_volatility_alternating_returns_converges_to_return_size_with_its_half_life() -> None:
    # Log returns of +-0.001 (zero mean: a drift estimate cannot hide in them), then +-0.002 for 10 bars.
    sizes = np.r_[np.full(399, 0.001), np.full(10, 0.002)]
    returns = sizes * np.where(np.arange(len(sizes)) % 2, 1.0, -1.0)
    close = 100 * np.exp(np.r_[0.0, np.cumsum(returns)])
    vol = ewma_volatility(close, close * 1.0001, close * 0.9999, halflife=10.0)
    assert vol[399] == pytest.approx(0.001, rel=1e-6)
    # One half-life into the new regime the variance is half-way: (0.001^2 + 0.002^2) / 2.
    assert vol[-1] == pytest.approx(np.sqrt((0.001**2 + 0.002**2) / 2), rel=1e-6)


@pytest.fixture(scope="module")
def stoxx() -> np.ndarray:
    frame = load_bars(["STOXX50F"])
    return frame[["high", "low", "close"]].to_numpy()


def test_corwin_schultz_stoxx50f_1min_gives_a_tick_sized_spread(stoxx: np.ndarray) -> None:
    """One tick is 1 point at ~3,600, i.e. 2.8 bps full spread. The median of the 20-bar estimate must lie
    within [0.25, 2] ticks: bar-based estimators run low on minute bars whose range is often a single tick
    (price discreteness) and high when volatility leaks into the range, so a factor of ~2-4 either side of
    one tick is the honest precision; outside it the estimator (or the data) is broken."""
    tick_bps = 1.0 / np.median(stoxx[:, 2]) * 1e4
    for estimator in (corwin_schultz, abdi_ranaldo):
        est_bps = np.nanmedian(estimator(stoxx[:, 0], stoxx[:, 1], stoxx[:, 2], 20)) * 1e4
        assert 0.25 * tick_bps <= est_bps <= 2.0 * tick_bps, (estimator.__name__, est_bps, tick_bps)


def test_market_arrays_stoxx50f_half_spread_is_a_few_bps() -> None:
    market = MarketArrays.from_bars(load_bars(["STOXX50F"]), SimulatorConfig())
    assert market.bar_seconds == 60.0
    median_bps = float(np.median(market.half_spread)) * 1e4
    assert 0.5 <= median_bps <= 3.0  # half of a 1-2 tick spread plus volatility widening
