"""Every validation rule fails fast on real bundled bars with one bad cell, naming rule, symbol and time."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ai_trading.data import DataConfig, canonicalize, load, load_bars, validate_bars
from ai_trading.errors import DataValidationError


@pytest.fixture(scope="module")
def real_bars() -> pd.DataFrame:
    return load_bars(["NVDA", "ORCL"], start="2010-01-01", end="2010-12-31")


def _corrupt(bars: pd.DataFrame, row: int, column: str, value: float) -> tuple[pd.DataFrame, tuple]:
    bad = bars.copy()
    bad.iloc[row, bad.columns.get_loc(column)] = value
    return bad, bars.index[row]


@pytest.mark.parametrize(
    ("column", "value", "rule"),
    [
        ("close", np.nan, "non_finite"),
        ("volume", np.inf, "non_finite"),
        ("open", 0.0, "non_positive_price"),
        ("low", -1.0, "non_positive_price"),
        ("volume", -5.0, "negative_volume"),
        ("high", 1e-3, "high_below_open_close"),
        ("low", 1e6, "low_above_open_close"),
    ],
)
def test_validate_bad_cell_names_rule_symbol_and_timestamp(
    real_bars: pd.DataFrame, column: str, value: float, rule: str
) -> None:
    bad, (when, symbol) = _corrupt(real_bars, 101, column, value)
    with pytest.raises(DataValidationError) as info:
        validate_bars(bad)
    assert info.value.rule == rule
    assert info.value.symbol == symbol
    assert info.value.timestamp == when
    assert symbol in str(info.value) and rule in str(info.value)


def test_validate_leaves_input_unchanged_on_failure(real_bars: pd.DataFrame) -> None:
    bad, _ = _corrupt(real_bars, 5, "close", np.nan)
    before = bad.copy()
    with pytest.raises(DataValidationError):
        validate_bars(bad)
    pd.testing.assert_frame_equal(bad, before)


def test_validate_duplicated_timestamp_for_symbol(real_bars: pd.DataFrame) -> None:
    duplicated = canonicalize(pd.concat([real_bars, real_bars.iloc[[10]]]))
    with pytest.raises(DataValidationError) as info:
        validate_bars(duplicated)
    assert info.value.rule == "duplicate_timestamp"
    assert (info.value.timestamp, info.value.symbol) == real_bars.index[10]


def test_validate_unsorted_frame_is_rejected(real_bars: pd.DataFrame) -> None:
    with pytest.raises(DataValidationError, match="unsorted"):
        validate_bars(real_bars.iloc[::-1])


def test_validate_naive_timestamps_are_rejected(real_bars: pd.DataFrame) -> None:
    naive = real_bars.copy()
    naive.index = naive.index.set_levels(naive.index.levels[0].tz_localize(None), level=0)
    with pytest.raises(DataValidationError, match="UTC"):
        validate_bars(naive)


def test_validate_float32_columns_are_rejected(real_bars: pd.DataFrame) -> None:
    with pytest.raises(DataValidationError, match="float64"):
        validate_bars(real_bars.astype("float32"))


def test_load_start_after_end_is_rejected() -> None:
    with pytest.raises(DataValidationError, match=r"data\.start=2010-01-01 is after data\.end=2009-01-01") as info:
        load(DataConfig(symbols=["SP500"], start="2010-01-01", end="2009-01-01"))
    assert info.value.rule == "bad_range"


def test_load_range_without_bars_is_empty_selection() -> None:
    with pytest.raises(DataValidationError) as info:
        load(DataConfig(symbols=["SP500", "NVDA"], start="2016-01-01"))
    assert info.value.rule == "empty_selection"
    assert info.value.symbol == "NVDA"


def test_load_no_symbols_is_empty_selection() -> None:
    with pytest.raises(DataValidationError, match="empty_selection"):
        load(DataConfig(symbols=[]))


def test_load_unparseable_date_is_bad_range() -> None:
    with pytest.raises(DataValidationError, match="bad_range"):
        load(DataConfig(symbols=["SP500"], start="not-a-date"))


def test_load_range_is_inclusive_and_sorted_across_symbols() -> None:
    frame = load_bars(["ORCL", "NVDA"], start="2005-03-01", end="2005-03-04")
    stamps = frame.index.get_level_values("timestamp")
    assert stamps.min() == pd.Timestamp("2005-03-01", tz="UTC")
    assert stamps.max() == pd.Timestamp("2005-03-04", tz="UTC")
    assert frame.index.get_level_values("symbol").tolist()[:2] == ["NVDA", "ORCL"]
    assert frame.index.is_monotonic_increasing
