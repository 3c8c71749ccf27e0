"""Market arrays from bars: the memory the pivot takes and the repeated-bar check."""

from __future__ import annotations

import dataclasses
import tracemalloc

import numpy as np
import pandas as pd
import pytest

from ai_trading.data.schema import canonicalize
from ai_trading.errors import DataValidationError
from ai_trading.execution import SimulatorConfig
from ai_trading.execution.market import MarketArrays


def _minute_bars(n_symbols: int, days: int) -> pd.DataFrame:
    sessions = pd.bdate_range("2020-01-06", periods=days, tz="UTC")
    minutes = pd.to_timedelta(np.arange(390), unit="min") + pd.Timedelta(hours=14, minutes=30)
    stamps = sessions.repeat(len(minutes)) + np.tile(minutes, days)
    rng = np.random.default_rng(3)
    parts = []
    for i in range(n_symbols):
        close = 100 * np.exp(np.cumsum(rng.normal(0, 1e-3, len(stamps))))
        open_ = close * np.exp(rng.normal(0, 2e-4, len(stamps)))
        index = pd.MultiIndex.from_arrays([stamps, [f"S{i:02d}"] * len(stamps)], names=["timestamp", "symbol"])
        parts.append(pd.DataFrame({"open": open_, "high": np.maximum(open_, close) * 1.0005,
                                   "low": np.minimum(open_, close) * 0.9995, "close": close,
                                   "volume": np.round(rng.lognormal(8, 0.5, len(stamps)))}, index=index))
    bars = canonicalize(pd.concat(parts))
    return bars[rng.random(len(bars)) > 0.05]  # some symbols miss some minutes


def test_from_bars_peak_memory_stays_within_one_and_a_half_times_the_arrays_it_returns() -> None:
    # numpy reports its buffers to tracemalloc: the pivot's own peak over the wide arrays it returns. Unstacking
    # every column and then copying each (the old pivot) reached about 1.9x.
    bars = _minute_bars(5, 40)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        market = MarketArrays.from_bars(bars, SimulatorConfig())
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    returned = sum(v.nbytes for v in (getattr(market, f.name) for f in dataclasses.fields(market))
                   if isinstance(v, np.ndarray))
    assert market.shape == (40 * 390, 5)
    assert peak <= 1.5 * returned, f"from_bars peak {peak / returned:.2f}x the arrays it returns"


def test_from_bars_places_each_bar_at_its_timestamp_and_symbol_whatever_the_row_order() -> None:
    bars = _minute_bars(3, 2)
    market = MarketArrays.from_bars(bars, SimulatorConfig())
    shuffled = MarketArrays.from_bars(bars.sample(frac=1.0, random_state=0), SimulatorConfig())
    for field in ("open", "high", "low", "close", "volume", "mark", "tradable", "half_spread", "vol"):
        np.testing.assert_array_equal(getattr(shuffled, field), getattr(market, field))
    wide = bars["close"].unstack("symbol")
    assert market.symbols == tuple(wide.columns)
    pd.testing.assert_index_equal(market.timestamps, pd.DatetimeIndex(wide.index), exact=True)
    np.testing.assert_array_equal(market.tradable, wide.notna().to_numpy())
    np.testing.assert_array_equal(market.close[market.tradable], wide.to_numpy()[market.tradable])


def test_from_bars_refuses_two_bars_of_one_symbol_at_one_timestamp() -> None:
    bars = _minute_bars(2, 1)
    repeated = pd.concat([bars, bars.iloc[[7]]])
    ts, symbol = bars.index[7]
    with pytest.raises(DataValidationError, match="duplicate_timestamp") as info:
        MarketArrays.from_bars(repeated, SimulatorConfig())
    assert info.value.symbol == symbol and info.value.timestamp == ts
