"""The streaming fingerprint equals the in-memory one however the bars are cut; the cache never serves a
changed store's old fingerprint."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ai_trading.data import DataConfig, dataset_fingerprint, load, load_bars, loader
from ai_trading.data.fingerprint import FingerprintStream
from ai_trading.data.fingerprint_cache import cache_dir
from ai_trading.data.ingest import ingest
from ai_trading.data.schema import BAR_COLUMNS
from ai_trading.data.store import ParquetStore
from ai_trading.errors import DataValidationError

BARS = load_bars(["SP500", "NVDA", "ORCL"], start="2012-01-01", end="2012-04-30")
BASE = dataset_fingerprint(BARS)


def _by_symbol(frame: pd.DataFrame) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    out = {}
    for symbol, part in frame.groupby(level="symbol"):
        stamps = part.index.get_level_values("timestamp").as_unit("ns").asi8
        out[str(symbol)] = (stamps, part.loc[:, list(BAR_COLUMNS)].to_numpy())
    return out


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_any_chunking_in_canonical_order_gives_the_in_memory_fingerprint(data: st.DataObject) -> None:
    stream = FingerprintStream()
    for symbol, (stamps, values) in sorted(_by_symbol(BARS).items()):
        cuts = sorted(data.draw(st.lists(st.integers(0, len(stamps)), max_size=6), label=f"cuts {symbol}"))
        for a, b in zip([0, *cuts], [*cuts, len(stamps)], strict=True):
            stream.update(symbol, stamps[a:b], values[a:b].T)  # empty chunks included
    assert stream.hexdigest() == BASE


def test_stream_refuses_symbols_or_timestamps_out_of_canonical_order() -> None:
    parts = _by_symbol(BARS)
    stream = FingerprintStream()
    stream.update("SP500", parts["SP500"][0], parts["SP500"][1].T)
    with pytest.raises(DataValidationError, match="unsorted"):
        stream.update("NVDA", parts["NVDA"][0], parts["NVDA"][1].T)
    stamps, values = parts["ORCL"]
    backwards = FingerprintStream()
    backwards.update("ORCL", stamps[10:], values[10:].T)
    with pytest.raises(DataValidationError, match="unsorted"):
        backwards.update("ORCL", stamps[:10], values[:10].T)


def test_load_streams_the_fingerprint_of_the_frame_it_returns() -> None:
    bars = load(DataConfig(symbols=["YHOO", "NASDAQ"], start="2010-01-01", end="2011-12-31"))
    assert bars.fingerprint == dataset_fingerprint(bars.frame)


def test_float32_input_fingerprints_as_its_float64_values() -> None:
    single = BARS.xs("NVDA", level="symbol", drop_level=False)
    rounded = single.astype(np.float32).astype(np.float64)
    assert dataset_fingerprint(single.astype(np.float32)) == dataset_fingerprint(rounded)


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("AI_TRADING_CACHE_DIR", str(tmp_path / "cache"))
    ingest("bundled", tmp_path / "store", ["SP500", "NVDA"])
    return tmp_path / "store"


def _config(store: Path) -> DataConfig:
    return DataConfig(symbols=["SP500", "NVDA"], start="2010-01-01", source=str(store), layout="parquet_dataset")


def test_unchanged_store_is_not_hashed_again(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = load(_config(store))
    assert len(list(cache_dir().glob("*.json"))) == 1
    assert str(cache_dir()).startswith(os.environ["AI_TRADING_CACHE_DIR"])

    class NoHashing(FingerprintStream):
        def update(self, *_args: object, **_kwargs: object) -> None:
            raise AssertionError("an unchanged store was hashed again")

    monkeypatch.setattr(loader, "FingerprintStream", NoHashing)
    assert load(_config(store)).fingerprint == first.fingerprint


def test_changed_file_is_hashed_again_even_with_its_old_mtime(store: Path, tmp_path: Path) -> None:
    first = load(_config(store))
    part = store / "symbol=NVDA" / "year=2012" / "part-0.parquet"
    before = part.stat()
    frame = load_bars(["NVDA"])
    frame.loc[frame.index.get_level_values("timestamp") == pd.Timestamp("2012-05-01", tz="UTC"), "volume"] += 1.0
    csv = tmp_path / "csv"
    csv.mkdir()
    frame.droplevel("symbol").rename_axis("timestamp").reset_index().to_csv(csv / "NVDA.csv", index=False)
    assert ingest(str(csv), store, ["NVDA"]).files_written == 1  # only the 2012 file changed
    os.utime(part, ns=(before.st_atime_ns, before.st_mtime_ns))  # a copy tool restoring the old mtime
    second = load(_config(store))
    assert second.fingerprint != first.fingerprint
    assert second.fingerprint == dataset_fingerprint(second.frame)


def test_file_identity_changes_when_bytes_change_in_place_with_same_size_and_mtime(store: Path) -> None:
    root = ParquetStore(str(store))
    part = store / "symbol=SP500" / "year=2011" / "part-0.parquet"
    before = part.stat()
    identity = root.file_identity([str(part)])
    time.sleep(0.05)  # past the filesystem's timestamp tick of the ingest's write
    with part.open("r+b") as fh:  # same length, other bytes, written in place (same inode)
        fh.seek(8)
        byte = fh.read(1)
        fh.seek(8)
        fh.write(bytes([byte[0] ^ 0xFF]))
    os.utime(part, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = part.stat()
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (before.st_size, before.st_mtime_ns, before.st_ino)
    assert root.file_identity([str(part)]) != identity


def _restamp(frame: pd.DataFrame, stamps: pd.DatetimeIndex) -> pd.DataFrame:
    index = frame.index
    assert isinstance(index, pd.MultiIndex)
    return frame.set_axis(index.set_levels(stamps, level="timestamp", verify_integrity=False), axis=0)


def test_a_fed_buffer_may_be_reused_by_the_caller() -> None:
    """The stream keeps no view of what it was fed: a reader refilling one buffer for the next symbol does not
    change the fingerprint of what was fed before."""
    parts = _by_symbol(BARS)
    stamps, values = parts["NVDA"]
    buffer = stamps.copy()
    stream = FingerprintStream()
    stream.update("NVDA", buffer, values.T)
    buffer += 86_400 * 10**9  # the next symbol's bars, a day later, in the same buffer
    later = BARS.xs("NVDA", level="symbol", drop_level=False).rename(index={"NVDA": "ORCL"}, level="symbol")
    later = _restamp(later, later.index.levels[0] + pd.Timedelta(days=1))
    stream.update("ORCL", buffer, values.T)
    assert stream.hexdigest() == dataset_fingerprint(pd.concat([BARS.xs("NVDA", level="symbol", drop_level=False),
                                                               later]))


def _reference_fingerprint(frame: pd.DataFrame) -> str:
    """Format ``ai_trading.bars/2`` as the module docstring states it, written plainly (per symbol, per column,
    a copy each): the oracle the fast paths must match."""
    import hashlib

    from ai_trading.data.fingerprint import canonical_json
    from ai_trading.data.frequency import frequency_label

    outer = hashlib.sha256(b"ai_trading.bars/2\0")
    stamps: set[int] = set()
    for symbol in sorted(frame.index.get_level_values("symbol").unique()):
        part = frame.xs(symbol, level="symbol").sort_index()
        ns = pd.DatetimeIndex(part.index).tz_convert("UTC").as_unit("ns").asi8
        stamps.update(ns.tolist())
        outer.update(canonical_json({"rows": len(part), "symbol": symbol}))
        outer.update(hashlib.sha256(np.asarray(ns, dtype="<i8").tobytes()).digest())
        for column in BAR_COLUMNS:
            outer.update(hashlib.sha256(part[column].to_numpy(dtype="<f8").tobytes()).digest())
    union = pd.DatetimeIndex(np.array(sorted(stamps), dtype="M8[ns]"), tz="UTC")
    outer.update(canonical_json({
        "index": ["timestamp", "symbol"], "columns": list(BAR_COLUMNS), "dtypes": ["float64"] * 5, "rows": len(frame),
        "selection": {"symbols": sorted(frame.index.get_level_values("symbol").unique()),
                      "start": union[0].isoformat(), "end": union[-1].isoformat(),
                      "frequency": frequency_label(union)}}))
    return outer.hexdigest()


@settings(max_examples=20, deadline=None)
@given(data=st.data())
def test_symbols_sharing_a_calendar_fingerprint_as_the_format_states(data: st.DataObject) -> None:
    """Most symbols of a store share one calendar, which the stream checks and merges once; a symbol on another
    calendar, or cut into other chunks, still counts in full."""
    nvda = BARS.xs("NVDA", level="symbol", drop_level=False)
    copies = [nvda.rename(index={"NVDA": name}, level="symbol") for name in ("AAA", "BBB", "CCC")]
    later = _restamp(copies[2], copies[2].index.levels[0] + pd.Timedelta(days=3))  # CCC ends after the others
    frame = pd.concat([copies[0], copies[1].iloc[5:], later, BARS.xs("ORCL", level="symbol", drop_level=False)])
    frame = frame.sort_index(level=["timestamp", "symbol"])
    expected = _reference_fingerprint(frame)
    assert dataset_fingerprint(frame) == expected
    stream = FingerprintStream()
    for symbol, (stamps, values) in sorted(_by_symbol(frame).items()):
        cuts = sorted(data.draw(st.lists(st.integers(0, len(stamps)), max_size=3), label=f"cuts {symbol}"))
        for a, b in zip([0, *cuts], [*cuts, len(stamps)], strict=True):
            stream.update(symbol, stamps[a:b], np.ascontiguousarray(values[a:b].T))
    assert stream.hexdigest() == expected
