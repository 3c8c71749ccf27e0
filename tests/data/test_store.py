"""The hive-partitioned Parquet store: ingest, pushed-down reads, the preset, the memory pre-flight."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ai_trading.data import DataConfig, dataset_fingerprint, load
from ai_trading.data.ingest import ingest, main
from ai_trading.data.memory import estimate_load_bytes
from ai_trading.data.store import ParquetStore
from ai_trading.errors import ConfigError, DataValidationError, MemoryBudgetExceeded, UnknownSymbolError
from ai_trading.wiring import train_config
from tests.conftest import compose_config


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AI_TRADING_CACHE_DIR", str(tmp_path / "cache"))


def synthetic_csv_dir(path: Path, symbols: list[str], start: str = "2019-01-01", end: str = "2021-12-31",
                      seed: int = 0) -> Path:
    """Per-symbol CSV files of business-day bars with a random-walk close (valid OHLC by construction)."""
    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    days = pd.bdate_range(start, end)
    for symbol in symbols:
        close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, len(days))))
        open_ = close * np.exp(rng.normal(0.0, 0.003, len(days)))
        high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.01, len(days)))
        low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.01, len(days)))
        pd.DataFrame({"timestamp": days.strftime("%Y-%m-%d"), "open": open_, "high": high, "low": low,
                      "close": close, "volume": rng.integers(1_000, 100_000, len(days)).astype(float)}
                     ).to_csv(path / f"{symbol}.csv", index=False)
    return path


def test_store_of_bundled_bars_loads_the_same_bars_and_fingerprint(tmp_path: Path) -> None:
    ingest("bundled", tmp_path / "store", ["SP500", "NVDA"])
    direct = load(DataConfig(symbols=["SP500", "NVDA"], start="2006-03-01", end="2009-07-15"))
    stored = load(DataConfig(symbols=["NVDA", "SP500"], start="2006-03-01", end="2009-07-15",
                             source=str(tmp_path / "store"), layout="parquet_dataset"))
    pd.testing.assert_frame_equal(direct.frame, stored.frame)
    assert stored.fingerprint == direct.fingerprint == dataset_fingerprint(direct.frame)


def test_run_on_some_symbols_reads_only_their_files(tmp_path: Path) -> None:
    symbols = [f"S{i:02d}" for i in range(12)]
    ingest(str(synthetic_csv_dir(tmp_path / "csv", symbols)), tmp_path / "store")
    store = ParquetStore(str(tmp_path / "store"))
    assert len(store.files(symbols)) == 12 * 3  # three years each
    wanted = ["S03", "S07"]
    start, end = pd.Timestamp("2020-02-01", tz="UTC"), pd.Timestamp("2020-11-30", tz="UTC")
    needed = store.files(wanted, start, end)
    assert [Path(p).relative_to(tmp_path / "store").as_posix() for p in needed] == [
        "symbol=S03/year=2020/part-0.parquet", "symbol=S07/year=2020/part-0.parquet"]
    expected = load(DataConfig(symbols=wanted, start="2020-02-01", end="2020-11-30", source=str(tmp_path / "csv")))
    # Every other file of the store is garbage now: a run that opened any of them would fail.
    for path in store.files(symbols):
        if path not in needed:
            Path(path).write_bytes(b"not parquet")
    bars = load(DataConfig(symbols=wanted, start="2020-02-01", end="2020-11-30", source=str(tmp_path / "store"),
                           layout="parquet_dataset"))
    pd.testing.assert_frame_equal(bars.frame, expected.frame)
    assert bars.fingerprint == expected.fingerprint
    with pytest.raises(DataValidationError, match="unreadable"):  # the garbage is real: reading it fails
        load(DataConfig(symbols=["S01"], source=str(tmp_path / "store"), layout="parquet_dataset"))


def test_ingest_rerun_writes_nothing_and_a_changed_source_rewrites_only_its_partitions(tmp_path: Path) -> None:
    csv = synthetic_csv_dir(tmp_path / "csv", ["AAA", "BBB"])
    first = ingest(str(csv), tmp_path / "store")
    assert (first.rows, first.files_written, first.files_unchanged) == (2 * len(pd.bdate_range("2019-01-01",
                                                                                "2021-12-31")), 6, 0)
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "store").rglob("*.parquet")}
    again = ingest(str(csv), tmp_path / "store")
    assert (again.files_written, again.files_unchanged) == (0, 6)
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "store").rglob("*.parquet")} == stamps
    frame = pd.read_csv(csv / "AAA.csv")
    frame.loc[frame["timestamp"] == "2020-06-01", "volume"] += 1.0
    frame[frame["timestamp"] >= "2020-01-01"].to_csv(csv / "AAA.csv", index=False)  # 2019 dropped, 2020 changed
    third = ingest(str(csv), tmp_path / "store", ["AAA"])
    assert (third.files_written, third.files_unchanged, third.symbols[0].removed) == (1, 1, 1)
    assert not (tmp_path / "store" / "symbol=AAA" / "year=2019").exists()
    assert not list((tmp_path / "store").rglob("*.tmp"))


def test_ingest_invalid_symbol_fails_naming_rule_and_file_and_writes_nothing_of_it(tmp_path: Path) -> None:
    csv = synthetic_csv_dir(tmp_path / "csv", ["BAD"])
    frame = pd.read_csv(csv / "BAD.csv")
    frame.loc[5, "high"] = frame.loc[5, "low"] / 2
    frame.to_csv(csv / "BAD.csv", index=False)
    with pytest.raises(DataValidationError, match="high_below_open_close") as info:
        ingest(str(csv), tmp_path / "store")
    assert info.value.source == str(csv / "BAD.csv")
    assert not list((tmp_path / "store").rglob("*.parquet"))


def test_ingest_command_reports_symbols_rows_files_bytes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--source", "bundled", "--symbols", "NVDA", "--out", str(tmp_path / "s")]) == 0
    out = capsys.readouterr().out
    size = sum(p.stat().st_size for p in (tmp_path / "s").rglob("*.parquet"))
    assert f"ingested 1 symbols, 4012 rows into {tmp_path / 's'}: 16 files written, 0 unchanged, 0 removed, " \
           f"{size} bytes" in out
    assert main(["--source", "bundled", "--symbols", "NOPE", "--out", str(tmp_path / "s")]) == 1
    assert "unknown_symbol" in capsys.readouterr().err


def test_preset_composes_and_loads_through_the_entrypoint_config(tmp_path: Path) -> None:
    ingest("bundled", tmp_path / "store", ["ORCL", "YHOO"])
    cfg = compose_config(["data=parquet_dataset", f"data.source={tmp_path / 'store'}", "data.symbols=[ORCL,YHOO]",
                          "data.start=2010-01-01"])
    data = train_config(cfg).research.data
    assert data.layout == "parquet_dataset"
    bars = load(data)
    assert bars.symbols == ["ORCL", "YHOO"]
    assert bars.fingerprint == load(DataConfig(symbols=["ORCL", "YHOO"], start="2010-01-01")).fingerprint
    missing = compose_config(["data=parquet_dataset", f"data.source={tmp_path / 'store'}", "data.symbols=[MSFT]"])
    with pytest.raises(UnknownSymbolError, match="symbol=MSFT"):
        train_config(missing)


def test_parquet_layout_needs_a_store_directory() -> None:
    with pytest.raises(ConfigError, match=re.escape("data.layout=parquet_dataset")):
        DataConfig(symbols=["SP500"], layout="parquet_dataset")
    with pytest.raises(ConfigError, match=re.escape("data.max_memory_gb")):
        DataConfig(symbols=["SP500"], max_memory_gb=0)
    with pytest.raises(ConfigError, match=re.escape("data.max_memory_gb")):
        train_config(compose_config(["data=parquet_dataset", "data.source=/nowhere", "data.symbols=[A]",
                                     "data.max_memory_gb=-1"]))
    with pytest.raises(ConfigError, match=re.escape("data.max_memory_gb='lots': must be a number or null")):
        train_config(compose_config(["data=parquet_dataset", "data.source=/nowhere", "data.symbols=[A]",
                                     "data.max_memory_gb=lots"]))


def test_selection_over_the_memory_budget_fails_before_reading_naming_size_and_knob(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ingest(str(synthetic_csv_dir(tmp_path / "csv", ["AAA", "BBB"])), tmp_path / "store")
    config = DataConfig(symbols=["AAA", "BBB"], source=str(tmp_path / "store"), layout="parquet_dataset",
                        max_memory_gb=1e-5)
    with monkeypatch.context() as patch:
        patch.setattr(ParquetStore, "read", lambda *_a: pytest.fail("read bars before the memory check"))
        with pytest.raises(MemoryBudgetExceeded, match=re.escape("data.max_memory_gb")) as info:
            load(config)
    rows = 2 * len(pd.bdate_range("2019-01-01", "2021-12-31"))
    assert f"{rows:,} bars" in str(info.value)
    assert info.value.needed_bytes > info.value.budget_bytes == 10_000
    assert len(load(DataConfig(symbols=["AAA", "BBB"], source=str(tmp_path / "store"), layout="parquet_dataset",
                               max_memory_gb=1.0)).frame) == rows


def test_load_assembles_exactly_the_canonical_frame_of_its_symbols() -> None:
    from ai_trading.data.schema import canonicalize
    from ai_trading.data.sources import read_bundled

    symbols = ["SP500", "STOXX50F", "NVDA"]  # daily and 1-minute bars interleave
    bars = load(DataConfig(symbols=symbols, periods_per_year=252))
    reference = canonicalize(pd.concat([read_bundled(s) for s in symbols]))
    pd.testing.assert_frame_equal(bars.frame, reference, check_exact=True)
    pd.testing.assert_index_equal(bars.frame.index, reference.index, exact=True)


def test_write_symbol_refuses_bars_of_another_or_several_symbols(tmp_path: Path) -> None:
    from ai_trading.data.store import write_symbol

    two = load(DataConfig(symbols=["SP500", "NVDA"], start="2012-01-01", end="2012-02-01")).frame
    with pytest.raises(DataValidationError, match="NVDA"):
        write_symbol(tmp_path, "SP500", two)
    with pytest.raises(DataValidationError, match="bad_symbol"):
        write_symbol(tmp_path, "../x", two.xs("SP500", level="symbol", drop_level=False))
    assert not list(tmp_path.rglob("*.parquet"))


def test_store_load_peak_memory_stays_within_twice_the_bar_columns(tmp_path: Path) -> None:
    # numpy and pandas report their buffers to tracemalloc: the peak the load's own arrays reach, over the bytes
    # of the bar columns it returns (int64 timestamp + five float64 columns a row).
    import tracemalloc

    symbols = [f"S{i:02d}" for i in range(30)]
    ingest(str(synthetic_csv_dir(tmp_path / "csv", symbols, start="2010-01-01", end="2019-12-31")), tmp_path / "store")
    config = DataConfig(symbols=symbols, source=str(tmp_path / "store"), layout="parquet_dataset")
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        bars = load(config)
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    columns = len(bars.frame) * 48
    assert len(bars.frame) == 30 * len(pd.bdate_range("2010-01-01", "2019-12-31"))
    assert peak <= 2.0 * columns, f"load peak {peak / columns:.2f}x the bar columns"
    # The pre-flight refuses on its estimate: it must not promise less than the load takes.
    assert estimate_load_bytes(len(bars.frame)) >= peak


def test_store_read_sorts_files_out_of_order_and_keeps_repeated_timestamps_for_validation(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ai_trading.data.store import FILE_SCHEMA

    def write(year_dir: str, stamps: list[str], close: float) -> None:
        folder = tmp_path / "store" / "symbol=X" / year_dir
        folder.mkdir(parents=True)
        ts = pd.DatetimeIndex(stamps, tz="UTC")
        prices = {c: [close] * len(ts) for c in ("open", "high", "low", "close")}
        pq.write_table(pa.table({"timestamp": list(ts), **prices, "volume": [1.0] * len(ts)}, schema=FILE_SCHEMA),
                       folder / "part-0.parquet")

    # A file of 2021 filed under year=2019 comes first in path order, after the 2020 bars in time.
    write("year=2019", ["2021-01-04", "2021-01-05"], 2.0)
    write("year=2020", ["2020-01-02", "2020-01-03"], 1.0)
    bars = ParquetStore(str(tmp_path / "store")).read("X")
    assert list(bars.index.get_level_values("timestamp").strftime("%Y-%m-%d")) == [
        "2020-01-02", "2020-01-03", "2021-01-04", "2021-01-05"]
    assert bars["close"].tolist() == [1.0, 1.0, 2.0, 2.0]
    write("year=2022", ["2022-01-03", "2022-01-03"], 3.0)
    with pytest.raises(DataValidationError, match="duplicate_timestamp"):
        load(DataConfig(symbols=["X"], source=str(tmp_path / "store"), layout="parquet_dataset"))
