"""The live loop's one-bar feature build (``FeatureBuilder.build_last``) gives, bit for bit, the row the whole
history's build gives that bar: every bar of real series, flat windows (the z-scores' zero branch), both specs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ai_trading.data import DataConfig, load
from ai_trading.data.schema import BAR_COLUMNS
from ai_trading.errors import DataValidationError
from ai_trading.features import FeatureBuilder, make_spec
from ai_trading.paths import conf_file

DAILY = load(DataConfig(symbols=["SP500", "NVDA", "ORCL"], start="2008-01-01", end="2010-12-31"))


def _every_bar_equals_the_whole_build(builder: FeatureBuilder, frame: pd.DataFrame) -> int:
    whole = builder.build(frame).frame
    symbols = list(frame.index.get_level_values("symbol").unique())
    own = [frame.xs(s, level="symbol") for s in symbols]
    bars = [o.to_numpy(np.float64)[:, :len(BAR_COLUMNS)] for o in own]
    n = builder.spec.warmup + 1
    checked = 0
    for t, stamp in enumerate(own[0].index):
        if t + 1 < n:
            continue
        window = np.stack([b[t + 1 - n:t + 1] for b in bars])
        got = builder.build_last(window, symbols)
        expected = whole.xs(stamp, level="timestamp").loc[symbols].to_numpy()
        assert got.dtype == expected.dtype
        np.testing.assert_array_equal(got, expected, err_msg=f"bar {t} ({stamp})")
        checked += 1
    return checked


def test_build_last_equals_the_whole_history_build_on_every_bar() -> None:
    assert _every_bar_equals_the_whole_build(FeatureBuilder.default(), DAILY.frame) > 600


def test_build_last_equals_the_whole_build_on_flat_windows() -> None:
    frame = DAILY.frame.copy()
    def in_flat(index: pd.MultiIndex) -> np.ndarray:
        stamps = index.get_level_values("timestamp")
        return np.asarray((stamps >= pd.Timestamp("2009-03-02", tz=stamps.tz))
                          & (stamps < pd.Timestamp("2009-06-01", tz=stamps.tz)))

    flat = in_flat(frame.index)
    for column in ("open", "high", "low", "close"):
        frame.loc[flat, column] = 100.0
    frame.loc[flat, "volume"] = 5000.0
    builder = FeatureBuilder.default()
    built = builder.build(frame).frame
    zero = built.loc[in_flat(built.index), ["zscore_21", "volume_z_21"]]
    assert (zero.to_numpy() == 0).all(axis=1).any()  # the flat branch is reached
    assert _every_bar_equals_the_whole_build(builder, frame) > 600


def test_build_last_equals_the_whole_build_with_another_spec() -> None:
    import yaml

    cfg = yaml.safe_load(conf_file("features", "default_intraday.yaml").read_text(encoding="utf-8"))
    builder = FeatureBuilder(make_spec(cfg["name"], cfg["version"], cfg["features"]))
    assert _every_bar_equals_the_whole_build(builder, DAILY.frame) > 600


def test_build_last_names_the_symbol_of_a_non_finite_feature() -> None:
    builder = FeatureBuilder.default()
    n = builder.spec.warmup + 1
    own = [DAILY.frame.xs(s, level="symbol").to_numpy(np.float64)[:n, :5] for s in ("SP500", "NVDA")]
    window = np.stack(own)
    window[1, -1, 3] = -1.0  # a negative close: its log return is NaN
    with pytest.raises(DataValidationError, match="NaN or inf") as info, np.errstate(invalid="ignore"):
        builder.build_last(window, ["SP500", "NVDA"])
    assert info.value.symbol == "NVDA"
    with pytest.raises(DataValidationError, match="warm-up"):
        builder.build_last(window[:, 1:], ["SP500", "NVDA"])
