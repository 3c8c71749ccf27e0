"""Small hand-made bars for the execution tests (real bundled bars are used where realism matters)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from ai_trading.data import canonicalize
from ai_trading.execution import SimulatorConfig

# Every cost and financing switched off; tests switch on exactly what they check.
BARE = SimulatorConfig(
    spread_bps=0.0, spread_vol_coef=0.0, min_half_spread_bps=0.0, max_half_spread_bps=0.0, latency="constant",
    latency_ms=0.0, spike_prob=0.0, spike_ms=0.0, slippage_fixed_bps=0.0, slippage_vol_coef=0.0,
    impact_coef=0.0, participation_cap=1.0, queue_haircut=0.0, fee_bps=0.0, risk_free_annual_bps=0.0,
    margin_spread_annual_bps=0.0, borrow_fee_annual_bps=0.0,
)
# Every cost term and financing rate on and large, with random latency spikes: the config the path-agreement
# tests use.
FULL_COST = dataclasses.replace(
    BARE, spread_bps=None, min_half_spread_bps=0.5, max_half_spread_bps=100.0, spread_vol_coef=0.3,
    latency="lognormal", latency_ms=2000.0, latency_sigma=1.0, spike_prob=0.3, spike_ms=3000.0, spike_vol_coef=0.1,
    slippage_fixed_bps=0.5, slippage_vol_coef=0.1, impact_coef=0.7, participation_cap=0.3, fee_bps=1.0, fee_min=0.2,
    no_trade_band=0.001, risk_free_annual_bps=500.0, margin_spread_annual_bps=300.0, borrow_fee_annual_bps=200.0,
)


def frame_from_rows(rows: list[tuple[str, str, float, float, float, float, float]]) -> pd.DataFrame:
    """Rows of (timestamp, symbol, open, high, low, close, volume) -> canonical frame."""
    ts = pd.DatetimeIndex([r[0] for r in rows], tz="UTC")
    index = pd.MultiIndex.from_arrays([ts, [r[1] for r in rows]], names=["timestamp", "symbol"])
    values = np.array([r[2:] for r in rows], dtype=np.float64)
    return canonicalize(pd.DataFrame(values, index=index, columns=["open", "high", "low", "close", "volume"]))


def random_walk_frame(n_bars: int, *, freq: str = "1min", symbols: tuple[str, ...] = ("AAA",),
                      start: str = "2020-01-06 08:00", volume: float = 1_000.0, seed: int = 7) -> pd.DataFrame:
    """Synthetic OHLCV with a positive range on every bar (a fixed generator: the data, not the test, is random)."""
    rng = np.random.default_rng(seed)
    ts = pd.date_range(start, periods=n_bars, freq=freq, tz="UTC")
    parts = []
    for symbol in symbols:
        close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.002, n_bars)))
        open_ = np.concatenate(([100.0], close[:-1])) * (1 + rng.normal(0.0, 0.0005, n_bars))
        high = np.maximum(open_, close) * (1 + rng.uniform(0.0002, 0.002, n_bars))
        low = np.minimum(open_, close) * (1 - rng.uniform(0.0002, 0.002, n_bars))
        vol = np.full(n_bars, volume)
        index = pd.MultiIndex.from_arrays([ts, [symbol] * n_bars], names=["timestamp", "symbol"])
        parts.append(pd.DataFrame({"open": open_, "high": high, "low": low, "close": close, "volume": vol},
                                  index=index))
    return canonicalize(pd.concat(parts))
