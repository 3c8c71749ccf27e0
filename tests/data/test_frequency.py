"""The bar frequency: one inference for the fingerprint, the market arrays and the backtest, with an override."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from hydra.utils import instantiate

from ai_trading.data import DataConfig, QualityConfig, infer_frequency, load, load_bars
from ai_trading.data.fingerprint import selection_of
from ai_trading.errors import ConfigError, DataValidationError
from ai_trading.execution import SimulatorConfig
from ai_trading.execution.market import MarketArrays, slice_market
from tests.conftest import compose_config

SP500 = load_bars(["SP500"])
DAILY = pd.DatetimeIndex(SP500.index.get_level_values("timestamp"))


def resample(bars: pd.DataFrame, rule: str) -> pd.DataFrame:
    """OHLCV bars of one symbol aggregated to ``rule`` (first open, max high, min low, last close, summed volume)."""
    symbol = bars.index.get_level_values("symbol")[0]
    one = bars.xs(symbol, level="symbol")
    out = one.resample(rule).agg({"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"})
    out = out.dropna()
    out.index = pd.MultiIndex.from_arrays([out.index, [symbol] * len(out)], names=["timestamp", "symbol"])
    return out


def _stamps(frame: pd.DataFrame) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(frame.index.get_level_values("timestamp"))


def test_bundled_daily_bars_are_daily_252() -> None:
    freq = infer_frequency(DAILY)
    assert (freq.kind, freq.periods_per_year, freq.bar_seconds, freq.label) == ("daily", 252.0, 6.5 * 3600, "1d")


def test_weekly_resampled_bars_are_weekly_52_not_daily() -> None:
    # the old rule called any spacing of 12 hours or more daily (252 periods a year)
    freq = infer_frequency(_stamps(resample(SP500, "W-FRI")))
    assert (freq.kind, freq.periods_per_year, freq.label) == ("weekly", 52.0, "1w")
    assert freq.bar_seconds == pytest.approx(252 / 52 * 6.5 * 3600)


def test_month_end_resampled_bars_are_monthly_12() -> None:
    freq = infer_frequency(_stamps(resample(SP500, "ME")))
    assert (freq.kind, freq.periods_per_year, freq.label) == ("monthly", 12.0, "1mo")
    assert freq.bar_seconds == pytest.approx(21 * 6.5 * 3600)


def test_minute_bars_annualise_by_bars_per_session() -> None:
    days = pd.bdate_range("2020-01-06", periods=3)
    minutes = pd.DatetimeIndex([d + pd.Timedelta(hours=14, minutes=30 + i) for d in days for i in range(390)],
                               tz="UTC")
    freq = infer_frequency(minutes)
    assert (freq.kind, freq.periods_per_year, freq.bar_seconds, freq.label) == ("intraday", 252.0 * 390, 60.0,
                                                                                 "1min")


def test_bundled_stoxx_minute_bars_have_764_bars_per_session() -> None:
    stamps = _stamps(load_bars(["STOXX50F"]))
    per_day = pd.Series(1, index=stamps).groupby(stamps.normalize()).size()
    assert per_day.median() == 764
    assert infer_frequency(stamps).periods_per_year == 252.0 * 764


@pytest.mark.parametrize(("spacing", "shown"), [("84h", r"3\.5 days"), ("2D", "2 days"), ("QE", "days")])
def test_spacing_that_fits_no_kind_raises_naming_it(spacing: str, shown: str) -> None:
    stamps = pd.date_range("2010-01-04", periods=40, freq=spacing, tz="UTC")
    with pytest.raises(DataValidationError, match=f"median spacing of .*{shown}.*data.periods_per_year") as info:
        infer_frequency(stamps)
    assert info.value.rule == "bar_frequency"


def test_override_annualises_irregular_spacing() -> None:
    stamps = pd.date_range("2010-01-04", periods=40, freq="84h", tz="UTC")
    freq = infer_frequency(stamps, periods_per_year=104)
    assert (freq.kind, freq.periods_per_year) == ("custom", 104.0)
    assert freq.bar_seconds == pytest.approx(252 / 104 * 6.5 * 3600)


def test_override_wins_over_the_inferred_annualisation() -> None:
    freq = infer_frequency(_stamps(resample(SP500, "W-FRI")), periods_per_year=50)
    assert (freq.kind, freq.periods_per_year, freq.label) == ("weekly", 50.0, "1w")


@pytest.mark.parametrize("bad", [0, -12, float("nan")])
def test_non_positive_override_is_a_config_error(bad: float) -> None:
    with pytest.raises(ConfigError, match="periods_per_year"):
        infer_frequency(DAILY, periods_per_year=bad)


def test_single_timestamp_needs_the_override() -> None:
    with pytest.raises(DataValidationError, match="fewer than two"):
        infer_frequency(DAILY[:1])
    assert infer_frequency(DAILY[:1], periods_per_year=252).periods_per_year == 252.0


def test_short_daily_window_over_a_weekend_is_daily() -> None:
    # Thu, Fri, Mon: calendar spacing 1 and 3 days (median 2), business-day spacing 1 and 1
    stamps = pd.DatetimeIndex(["2010-01-07", "2010-01-08", "2010-01-11"], tz="UTC")
    assert infer_frequency(stamps).kind == "daily"


def test_fingerprint_selection_uses_the_same_label() -> None:
    weekly = resample(SP500, "W-FRI")
    assert selection_of(weekly)["frequency"] == infer_frequency(_stamps(weekly)).label == "1w"
    assert selection_of(SP500)["frequency"] == "1d"


def test_loaded_bars_carry_frequency_and_override() -> None:
    assert load(DataConfig(symbols=["SP500"], start="2010-01-01")).frequency.periods_per_year == 252.0
    override = load(DataConfig(symbols=["SP500"], start="2010-01-01", periods_per_year=260.0))
    assert (override.frequency.kind, override.frequency.periods_per_year) == ("daily", 260.0)


def test_weekly_directory_data_load_as_weekly(tmp_path: Path) -> None:
    weekly = resample(load_bars(["SP500"], start="2010-01-01"), "W-FRI").xs("SP500", level="symbol")
    weekly.rename_axis("timestamp").reset_index().assign(
        timestamp=lambda f: f["timestamp"].dt.strftime("%Y-%m-%d")).to_csv(tmp_path / "SPW.csv", index=False)
    bars = load(DataConfig(symbols=["SPW"], source=str(tmp_path)))
    assert (bars.frequency.kind, bars.frequency.periods_per_year) == ("weekly", 52.0)


def test_irregular_directory_data_fail_at_load_unless_overridden(tmp_path: Path) -> None:
    stamps = pd.date_range("2010-01-04", periods=30, freq="84h")
    pd.DataFrame({"timestamp": stamps.strftime("%Y-%m-%d %H:%M"), "open": 10.0, "high": 11.0, "low": 9.0,
                  "close": 10.5, "volume": 100.0}).to_csv(tmp_path / "IRR.csv", index=False)
    with pytest.raises(DataValidationError, match=r"3\.5 days"):
        load(DataConfig(symbols=["IRR"], source=str(tmp_path)))
    assert load(DataConfig(symbols=["IRR"], source=str(tmp_path), periods_per_year=104)).frequency.kind == "custom"


def test_market_arrays_take_the_bars_frequency_and_slices_keep_it() -> None:
    weekly = resample(SP500, "W-FRI")
    market = MarketArrays.from_bars(weekly, SimulatorConfig())
    assert market.frequency.periods_per_year == 52.0
    assert market.bar_seconds == market.frequency.bar_seconds
    # one row cannot be inferred from: a slice keeps the annualisation of its data
    assert slice_market(market, 10, 11).frequency == market.frequency
    given = infer_frequency(_stamps(weekly), periods_per_year=50)
    assert MarketArrays.from_bars(weekly, SimulatorConfig(), frequency=given).frequency.periods_per_year == 50.0


def test_simulator_bar_seconds_still_overrides_the_fill_duration() -> None:
    market = MarketArrays.from_bars(resample(SP500, "W-FRI"), SimulatorConfig(bar_seconds=600.0))
    assert market.bar_seconds == 600.0
    assert market.frequency.periods_per_year == 52.0


def test_composed_data_config_carries_the_override_and_defaults_equal_the_yaml() -> None:
    data = instantiate(compose_config(["data.periods_per_year=365"]).data, _convert_="all")
    assert data.periods_per_year == 365
    for option in ("daily_indices", "daily_stocks", "intraday_stoxx"):
        composed = instantiate(compose_config([f"data={option}"]).data, _convert_="all")
        assert composed.periods_per_year == DataConfig(symbols=["X"]).periods_per_year is None
        assert composed.quality == DataConfig(symbols=["X"]).quality == QualityConfig()
