"""The whole-history feature build's memory: only the kept rows are allocated."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest

from ai_trading.data import DataConfig, load
from ai_trading.data.ingest import ingest
from ai_trading.features import FeatureBuilder
from tests.data.test_store import synthetic_csv_dir


def test_build_peak_memory_stays_within_twice_the_features_it_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # numpy and pandas report their buffers to tracemalloc: the build's own peak over the bytes of the frame it
    # returns (values and index). Filling every row and then copying the kept ones out, with a full-size
    # finiteness mask, reached about 2.4x on this universe.
    monkeypatch.setenv("AI_TRADING_CACHE_DIR", str(tmp_path / "cache"))
    symbols = [f"S{i:02d}" for i in range(30)]
    ingest(str(synthetic_csv_dir(tmp_path / "csv", symbols, start="2010-01-01", end="2019-12-31")), tmp_path / "store")
    bars = load(DataConfig(symbols=symbols, source=str(tmp_path / "store"), layout="parquet_dataset"))
    builder = FeatureBuilder.default()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        features = builder.build(bars)
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    returned = int(features.frame.memory_usage(index=True, deep=False).sum())
    assert len(features.frame) == len(bars.frame) - 30 * builder.spec.warmup
    assert peak <= 2.0 * returned, f"build peak {peak / returned:.2f}x the features it returns"

