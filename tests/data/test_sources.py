"""Loading the bundled real files and user directories into canonical bars."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ai_trading.data import DataConfig, bundled_symbols, load, load_bars, sources
from ai_trading.errors import DataValidationError, UnknownSymbolError

# Bar counts and ranges as documented in the data's provenance README (independent of the loader).
EXPECTED = {
    "SP500": (5031, "1999-01-04", "2018-12-31"),
    "NASDAQ": (5031, "1999-01-04", "2018-12-31"),
    "NVDA": (4012, "1999-01-22", "2014-12-31"),
    "ORCL": (5036, "1995-01-03", "2014-12-31"),
    "YHOO": (4965, "1996-04-12", "2015-12-31"),
}


@pytest.mark.parametrize("symbol", sorted(EXPECTED))
def test_bundled_daily_symbol_loads_documented_bars(symbol: str) -> None:
    frame = load_bars([symbol])
    count, first, last = EXPECTED[symbol]
    stamps = frame.index.get_level_values("timestamp")
    assert len(frame) == count
    assert stamps[0] == pd.Timestamp(first, tz="UTC")
    assert stamps[-1] == pd.Timestamp(last, tz="UTC")
    assert list(frame.columns) == ["open", "high", "low", "close", "volume"]
    assert all(t == np.float64 for t in frame.dtypes)
    assert frame.index.names == ["timestamp", "symbol"]


def test_bundled_sp500_first_row_matches_raw_file() -> None:
    row = load_bars(["SP500"]).iloc[0]
    # First data line of sp500_index_daily.csv.gz: 1/4/1999,1229.22998,1248.810059,1219.099976,1228.099976,...,877000000
    assert row.tolist() == [1229.22998, 1248.810059, 1219.099976, 1228.099976, 877000000.0]


def test_bundled_intraday_quirky_header_parses_eight_fields_into_utc() -> None:
    frame = load_bars(["STOXX50F"])
    assert len(frame) == 30889
    first = frame.iloc[0]
    # Raw first row: 2006-01-02,09:01:00,3602.00,3603.00,3597.00,3599.00,5699,0 (Berlin, CET = UTC+1).
    assert frame.index[0][0] == pd.Timestamp("2006-01-02 08:01", tz="UTC")
    assert first.tolist() == [3602.0, 3603.0, 3597.0, 3599.0, 5699.0]
    sessions = frame.index.get_level_values("timestamp").tz_convert("Europe/Berlin").normalize().nunique()
    # The shared README says 42 sessions; the file holds 41 distinct dates (counted with zcat | cut | sort -u).
    assert sessions == 41


def test_bundled_intraday_changed_header_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    raw = gzip.decompress(sources._bundled_bytes("stoxx50_future_1min_2006.csv.gz")).decode()
    fixed = raw.replace("Date,Open,High,Low,Close,Volume,OpenInterest", "Date,Time,Open,High,Low,Close,Volume,OI", 1)
    monkeypatch.setattr(sources, "_bundled_bytes", lambda _name: gzip.compress(fixed.encode()))
    with pytest.raises(DataValidationError, match="header_mismatch") as info:
        load_bars(["STOXX50F"])
    assert info.value.rule == "header_mismatch"


def test_bundled_intraday_row_with_seven_fields_names_its_line(monkeypatch: pytest.MonkeyPatch) -> None:
    raw = gzip.decompress(sources._bundled_bytes("stoxx50_future_1min_2006.csv.gz")).decode().splitlines()
    raw[3] = raw[3].split(",", 1)[1]  # drop the date field of the 3rd data row (file line 4)
    monkeypatch.setattr(sources, "_bundled_bytes", lambda _name: gzip.compress("\n".join(raw).encode()))
    with pytest.raises(DataValidationError, match="line 4 has 7 fields"):
        load_bars(["STOXX50F"])


def test_unknown_symbol_raises_unknown_symbol_error() -> None:
    with pytest.raises(UnknownSymbolError) as info:
        load_bars(["AAPL"])
    assert info.value.symbol == "AAPL"
    assert "SP500" in str(info.value)


def test_bundled_symbols_lists_every_shipped_file() -> None:
    assert bundled_symbols() == ["NASDAQ", "NVDA", "ORCL", "SP500", "STOXX50F", "YHOO"]


def _write_csv(path: Path, lines: list[str]) -> None:
    path.write_text("\n".join(lines) + "\n")


def test_directory_csv_with_column_map_loads_canonical_bars(tmp_path: Path) -> None:
    _write_csv(tmp_path / "ABC.csv", [
        "Day,Clock,O,H,L,C,V",
        "2024-01-02,14:30,10,11,9.5,10.5,100",
        "2024-01-02,14:31,10.5,10.8,10.1,10.2,0",
    ])
    config = DataConfig(
        symbols=["ABC"], source=str(tmp_path), timezone="America/New_York",
        columns={"timestamp": "Day", "time": "Clock", "open": "O", "high": "H", "low": "L", "close": "C",
                 "volume": "V"},
    )
    bars = load(config)
    assert bars.frame.index[0] == (pd.Timestamp("2024-01-02 19:30", tz="UTC"), "ABC")
    assert bars.frame["volume"].tolist() == [100.0, 0.0]
    assert bars.selection["frequency"] == "1min"


def test_directory_parquet_and_csv_of_same_bars_share_fingerprint(tmp_path: Path) -> None:
    frame = pd.DataFrame({
        "timestamp": pd.to_datetime(["2024-01-02", "2024-01-03", "2024-01-04"]),
        "open": [1.0, 2.0, 3.0], "high": [1.5, 2.5, 3.5], "low": [0.5, 1.5, 2.5], "close": [1.2, 2.2, 3.2],
        "volume": [10.0, 20.0, 30.0],
    })
    (tmp_path / "pq").mkdir()
    (tmp_path / "csv").mkdir()
    frame.to_parquet(tmp_path / "pq" / "XYZ.parquet")
    frame.assign(timestamp=frame["timestamp"].dt.strftime("%Y-%m-%d")).to_csv(tmp_path / "csv" / "XYZ.csv", index=False)
    a = load(DataConfig(symbols=["XYZ"], source=str(tmp_path / "pq")))
    b = load(DataConfig(symbols=["XYZ"], source=str(tmp_path / "csv")))
    assert a.fingerprint == b.fingerprint
    pd.testing.assert_frame_equal(a.frame, b.frame)


def test_directory_csv_with_more_fields_than_header_fails_with_line(tmp_path: Path) -> None:
    _write_csv(tmp_path / "Q.csv", [
        "timestamp,open,high,low,close,volume",
        "2024-01-02,1,2,0.5,1.5,10",
        "2024-01-03,09:30,1,2,0.5,1.5,10",
    ])
    with pytest.raises(DataValidationError, match="line 3 has 7 fields") as info:
        load_bars(["Q"], source=str(tmp_path))
    assert info.value.source == str(tmp_path / "Q.csv")


def test_directory_missing_column_names_it(tmp_path: Path) -> None:
    _write_csv(tmp_path / "Q.csv", ["timestamp,open,high,low,close", "2024-01-02,1,2,0.5,1.5"])
    with pytest.raises(DataValidationError, match="missing_column"):
        load_bars(["Q"], source=str(tmp_path))


def test_directory_non_numeric_price_is_rejected(tmp_path: Path) -> None:
    _write_csv(tmp_path / "Q.csv", ["timestamp,open,high,low,close,volume", "2024-01-02,1,2,abc,1.5,3"])
    with pytest.raises(DataValidationError, match="non_numeric"):
        load_bars(["Q"], source=str(tmp_path))


def test_directory_that_does_not_exist_is_named(tmp_path: Path) -> None:
    with pytest.raises(DataValidationError, match="does not exist"):
        load_bars(["Q"], source=str(tmp_path / "nope"))
