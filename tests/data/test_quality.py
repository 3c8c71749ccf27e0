"""The data-quality report: stale opens, zero-volume runs and gaps, the warn/fail rule, and its MLflow record."""

from __future__ import annotations

import json
import logging
import math
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra.utils import instantiate
from mlflow.tracking import MlflowClient

from ai_trading.data import DataConfig, QualityConfig, load
from ai_trading.errors import ConfigError, DataValidationError
from tests.conftest import compose_config

RULE = "open_equals_prev_close_fraction"


def _raw(filename: str) -> pd.DataFrame:
    """A bundled file read with pandas alone (not the package's reader)."""
    with resources.as_file(resources.files("ai_trading.data").joinpath("bundled", filename)) as path:
        return pd.read_csv(path)


def _stale(raw: pd.DataFrame) -> pd.Series:
    """Per bar after the first (by date): does its open equal the previous bar's close."""
    dates = pd.to_datetime(raw["Date"], format="%m/%d/%Y")
    order = np.argsort(dates.to_numpy(), kind="stable")
    o, c = raw["Open"].to_numpy()[order], raw["Close"].to_numpy()[order]
    return pd.Series(o[1:] == c[:-1], index=dates.dt.year.to_numpy()[order][1:])


def _stale_by_year(raw: pd.DataFrame) -> pd.Series:
    return _stale(raw).groupby(level=0).mean()


SP500_RAW = _raw("sp500_index_daily.csv.gz")


def test_sp500_stale_open_fractions_match_the_raw_file_per_year() -> None:
    expected = _stale_by_year(SP500_RAW)
    assert (expected.loc[1999:2005] > 0.9).all() and (expected.loc[2014:] < 0.01).all()  # the file's quirk
    report = load(DataConfig(symbols=["SP500"])).quality.symbol("SP500")
    assert report.open_equals_prev_close_by_year == pytest.approx(expected.to_dict(), abs=1e-12)
    assert report.open_equals_prev_close == pytest.approx(float(_stale(SP500_RAW).mean()), abs=1e-12)
    assert report.stale_open_years(0.5) == pytest.approx(expected.loc[1999:2005].to_dict(), abs=1e-12)


def test_sp500_from_2010_has_few_stale_opens() -> None:
    report = load(DataConfig(symbols=["SP500"], start="2010-01-01")).quality.symbol("SP500")
    expected = _stale_by_year(SP500_RAW).loc[2010:]
    assert report.open_equals_prev_close_by_year[2014] == pytest.approx(expected.loc[2014], abs=1e-12)
    assert max(report.open_equals_prev_close_by_year.values()) < 0.3
    assert report.stale_open_years(0.5) == {}


def test_sp500_gaps_are_the_known_market_closures() -> None:
    report = load(DataConfig(symbols=["SP500"])).quality.symbol("SP500")
    # 9/11 (four sessions), the Ford national day of mourning with New Year, hurricane Sandy (two sessions)
    assert {g.start[:10] for g in report.largest_gaps} == {"2001-09-10", "2006-12-29", "2012-10-26"}
    assert report.gaps == 3
    assert (report.largest_gaps[0].start[:10], report.largest_gaps[0].days) == ("2001-09-10", 7.0)


def test_nasdaq_zero_volume_bars_counted() -> None:
    raw = _raw("nasdaq_index_daily.csv.gz")
    report = load(DataConfig(symbols=["NASDAQ"])).quality.symbol("NASDAQ")
    assert report.zero_volume_bars == int((raw["Volume"] == 0).sum()) > 0


def test_intraday_rule_compares_session_opens_only() -> None:
    # within a session the next minute often opens at the last price (62 % of the STOXX minutes): only the
    # first bar of a day says whether the data's opens are stale
    bars = load(DataConfig(symbols=["STOXX50F"]))
    frame = bars.frame.xs("STOXX50F", level="symbol")
    day = pd.DatetimeIndex(frame.index).normalize()
    first = np.flatnonzero(day[1:] != day[:-1]) + 1
    expected = float(np.mean(frame["open"].to_numpy()[first] == frame["close"].to_numpy()[first - 1]))
    assert bars.quality.symbol("STOXX50F").open_equals_prev_close == pytest.approx(expected, abs=1e-12)
    assert np.mean(frame["open"].to_numpy()[1:] == frame["close"].to_numpy()[:-1]) > 0.5


def _directory_bars(tmp_path: Path, volume: list[float]) -> str:
    stamps = pd.bdate_range("2020-01-06", periods=len(volume))
    close = 100.0 + np.arange(len(volume))
    pd.DataFrame({"timestamp": stamps.strftime("%Y-%m-%d"), "open": close - 0.5, "high": close + 1,
                  "low": close - 1, "close": close, "volume": volume}).to_csv(tmp_path / "ZV.csv", index=False)
    return str(tmp_path)


def test_longest_zero_volume_run_and_its_start(tmp_path: Path) -> None:
    source = _directory_bars(tmp_path, [5, 0, 5, 0, 0, 0, 5, 0, 0, 5])
    report = load(DataConfig(symbols=["ZV"], source=source)).quality.symbol("ZV")
    assert (report.zero_volume_bars, report.longest_zero_volume_run) == (6, 3)
    assert report.longest_zero_volume_run_start == "2020-01-09T00:00:00+00:00"
    assert report.open_equals_prev_close == 0.0


def test_warn_logs_one_warning_naming_symbol_fraction_and_years(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="ai_trading.data"):
        bars = load(DataConfig(symbols=["SP500", "NASDAQ"], end="2006-12-31"))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    (message,) = warnings
    fraction = bars.quality.symbol("SP500").open_equals_prev_close
    assert f"rule={RULE} symbol=SP500 fraction={fraction:.2f}" in message
    assert "years=1999,2000,2001,2002,2003,2004,2005:" in message  # 2006 (0.43) is below the threshold
    assert "1999 (0.97)" in message and "2005 (0.96)" in message


def test_fail_raises_naming_rule_symbol_and_fraction() -> None:
    with pytest.raises(DataValidationError, match=r"open equals the previous close on 0\.\d\d") as info:
        load(DataConfig(symbols=["NASDAQ", "SP500"], end="2006-12-31", quality=QualityConfig(action="fail")))
    assert (info.value.rule, info.value.symbol) == (RULE, "SP500")


def test_threshold_above_every_year_passes_silently(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="ai_trading.data"):
        load(DataConfig(symbols=["SP500"], quality=QualityConfig(max_open_equals_prev_close=0.99, action="fail")))
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]


@pytest.mark.parametrize(("kwargs", "key"), [({"max_open_equals_prev_close": 1.5}, "max_open_equals_prev_close"),
                                             ({"action": "ignore"}, "action")])
def test_bad_quality_config_names_the_key(kwargs: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError, match=f"data.quality.{key}"):
        QualityConfig(**kwargs)  # type: ignore[arg-type]


def test_report_to_dict_is_strict_json() -> None:
    payload = load(DataConfig(symbols=["SP500", "NVDA"], start="2005-01-01", end="2006-12-31")).quality.to_dict()
    decoded = json.loads(json.dumps(payload, allow_nan=False))
    assert decoded["frequency"] == "1d"
    assert decoded["symbols"]["SP500"]["open_equals_prev_close_by_year"]["2005"] > 0.9


def test_composed_config_fail_action_stops_the_load() -> None:
    cfg = compose_config(["data.quality.action=fail", "data.start=1999-01-01"])
    with pytest.raises(DataValidationError, match=RULE):
        load(instantiate(cfg.data, _convert_="all"))


def test_default_window_skips_the_stale_years() -> None:
    bars = load(instantiate(compose_config().data, _convert_="all"))
    for entry in bars.quality.symbols:
        assert entry.stale_open_years(0.5) == {}, entry.symbol


def test_job_run_logs_quality_report_and_frequency(mlflow_uri: str) -> None:
    from ai_trading.jobs import start_job_run
    from ai_trading.pipeline import build_costs, build_dataset
    from ai_trading.wiring import train_config

    research = train_config(compose_config(["data.symbols=[SP500]", "data.start=2004-01-01", "data.end=2009-12-31",
                                            f"tracking.tracking_uri={mlflow_uri}"])).research
    dataset = build_dataset(research.data, research.features)
    execution = build_costs(dataset, research.simulator, research.cost_model)
    with start_job_run(research, dataset, execution, run_name="quality", overrides=[]) as run:
        run_id = run.run_id
    client = MlflowClient(tracking_uri=mlflow_uri)
    logged = json.loads(Path(client.download_artifacts(run_id, "data/quality.json")).read_text())
    assert logged == json.loads(json.dumps(dataset.bars.quality.to_dict()))
    record = client.get_run(run_id).data
    assert (record.tags["data_frequency"], float(record.tags["data_periods_per_year"])) == ("1d", 252.0)
    fraction = record.metrics["data/SP500/open_equals_prev_close"]
    assert math.isclose(fraction, dataset.bars.quality.symbol("SP500").open_equals_prev_close)
