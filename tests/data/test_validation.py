"""Every validation rule fails on real bundled bars with one bad cell, naming rule, symbol and time; a file with
several defects reports them all at once, naming the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ai_trading.data import DataConfig, canonicalize, load, load_bars, validate_bars
from ai_trading.errors import DataDefects, DataValidationError


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


def _write(path: Path, lines: list[str]) -> None:
    path.write_text("\n".join(lines) + "\n")


HEADER = "timestamp,open,high,low,close,volume"


def test_validate_reports_every_broken_rule_at_once(real_bars: pd.DataFrame) -> None:
    bad, (first_when, symbol) = _corrupt(real_bars, 7, "volume", -5.0)
    bad.iloc[20, bad.columns.get_loc("high")] = 1e-3
    bad.iloc[30, bad.columns.get_loc("high")] = 1e-3
    bad = canonicalize(pd.concat([bad, bad.iloc[[40]]]))
    with pytest.raises(DataDefects) as info:
        validate_bars(bad, source="/data/bars/NVDA.csv")
    rules = [d.rule for d in info.value.defects]
    assert rules == ["negative_volume", "high_below_open_close", "duplicate_timestamp"]
    assert (info.value.rule, info.value.symbol, info.value.timestamp) == ("negative_volume", symbol, first_when)
    assert "high is below max(open, close) in 2 rows" in str(info.value)
    assert str(info.value).startswith("[negative_volume] 3 defects in /data/bars/NVDA.csv: ")
    assert all(d.source == "/data/bars/NVDA.csv" for d in info.value.defects)


def test_directory_file_reports_every_defect_naming_the_file(tmp_path: Path) -> None:
    _write(tmp_path / "GOOD.csv", [HEADER, "2024-01-02,10,11,9,10,100", "2024-01-03,10,11,9,10,100"])
    _write(tmp_path / "BAD.csv", [
        HEADER,
        "2024-01-02,10,11,9,10,100",
        "2024-01-03,-1,11,9,10,100",  # negative price (and its low is above it)
        "2024-01-03,10,11,9,10,100",  # the same timestamp again
        "2024-01-04,10,9,9.5,10,100",  # high below open
        "2024-01-05,10,11,9,10,",  # no volume
    ])
    with pytest.raises(DataDefects) as info:
        load(DataConfig(symbols=["GOOD", "BAD"], source=str(tmp_path)))
    path = str(tmp_path / "BAD.csv")
    assert info.value.source == path and path in str(info.value)
    found = {d.rule: d for d in info.value.defects}
    assert sorted(found) == ["duplicate_timestamp", "high_below_open_close", "low_above_open_close", "non_finite",
                             "non_positive_price"]
    assert found["non_positive_price"].timestamp == pd.Timestamp("2024-01-03", tz="UTC")
    assert found["high_below_open_close"].timestamp == pd.Timestamp("2024-01-04", tz="UTC")
    assert all(d.source == path and d.symbol == "BAD" for d in info.value.defects)


def test_directory_file_missing_a_column_still_reports_its_other_defects(tmp_path: Path) -> None:
    _write(tmp_path / "MISS.csv", ["timestamp,open,high,close", "2024-01-02,10,11,10", "2024-01-03,-1,11,10",
                                   "2024-01-04,10,9,10"])
    with pytest.raises(DataDefects) as info:
        load(DataConfig(symbols=["MISS"], source=str(tmp_path)))
    assert [d.rule for d in info.value.defects] == ["missing_column", "non_positive_price", "high_below_open_close"]
    assert "['low', 'volume']" in str(info.value.defects[0])
    assert str(tmp_path / "MISS.csv") in str(info.value)


def test_directory_file_with_text_in_a_price_and_a_bad_date_names_both(tmp_path: Path) -> None:
    _write(tmp_path / "TXT.csv", [HEADER, "2024-01-02,10,11,9,10,abc", "notadate,10,11,9,10,100",
                                  "2024-01-04,10,11,9,10,n/a"])
    with pytest.raises(DataDefects) as info:
        load(DataConfig(symbols=["TXT"], source=str(tmp_path)))
    assert [d.rule for d in info.value.defects] == ["non_numeric", "bad_timestamp"]
    assert "column volume holds 'abc' (data row 1) and 1 more non-numbers" in str(info.value)
    assert "notadate" in str(info.value.defects[1])


def test_directory_file_with_one_defect_raises_it_alone_naming_the_file(tmp_path: Path) -> None:
    _write(tmp_path / "ONE.csv", [HEADER, "2024-01-02,10,11,9,10,100", "2024-01-03,10,11,9,10,-1"])
    with pytest.raises(DataValidationError) as info:
        load(DataConfig(symbols=["ONE"], source=str(tmp_path)))
    assert not isinstance(info.value, DataDefects)
    assert (info.value.rule, info.value.source) == ("negative_volume", str(tmp_path / "ONE.csv"))
