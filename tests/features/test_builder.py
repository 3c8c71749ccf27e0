"""The unified feature builder: values, warm-up, causality, validation and the fail-fast check."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ai_trading.data import DataConfig, load, load_bars
from ai_trading.errors import DataValidationError, FeatureSchemaMismatch
from ai_trading.features import FeatureBuilder, make_spec

DAILY = load(DataConfig(symbols=["SP500", "NVDA", "ORCL"], start="2008-01-01", end="2010-12-31"))


@pytest.fixture(scope="module")
def built():  # type: ignore[no-untyped-def]
    return FeatureBuilder.default().build(DAILY)


def test_build_outputs_float32_without_nan_aligned_to_bars(built) -> None:  # type: ignore[no-untyped-def]
    frame = built.frame
    assert all(t == np.float32 for t in frame.dtypes)
    assert np.isfinite(frame.to_numpy()).all()
    assert frame.index.isin(DAILY.frame.index).all()
    assert list(frame.columns) == built.feature_names
    assert built.dataset_fingerprint == DAILY.fingerprint


def test_build_drops_exactly_warmup_rows_per_symbol(built) -> None:  # type: ignore[no-untyped-def]
    # Longest lookback of the default spec: momentum over 63 bars is defined from the 63rd bar on,
    # i.e. 62 bars of history; log_return_21 needs 21 and realized_vol_21 needs 21 returns = 21 bars.
    warmup = 62
    for symbol in DAILY.symbols:
        bars_idx = DAILY.frame.xs(symbol, level="symbol").index
        feat_idx = built.frame.xs(symbol, level="symbol").index
        assert feat_idx[0] == bars_idx[warmup]
        assert len(feat_idx) == len(bars_idx) - warmup


def test_build_values_match_independent_pandas_computation(built) -> None:  # type: ignore[no-untyped-def]
    bars = DAILY.frame.xs("NVDA", level="symbol")
    feats = built.frame.xs("NVDA", level="symbol")
    close = bars["close"]
    expected = pd.DataFrame({
        "log_return_5": np.log(close / close.shift(5)),
        "realized_vol_21": np.log(close).diff().rolling(21).std(),
        "momentum_63": close / close.rolling(63).mean() - 1,
        "zscore_21": (close - close.rolling(21).mean()) / close.rolling(21).std(),
    }).loc[feats.index]
    np.testing.assert_allclose(feats[expected.columns].to_numpy(), expected.to_numpy(), rtol=2e-5, atol=1e-6)


def test_build_parkinson_matches_explicit_loop(built) -> None:  # type: ignore[no-untyped-def]
    bars = DAILY.frame.xs("ORCL", level="symbol")
    feats = built.frame.xs("ORCL", level="symbol")
    t = 100
    pos = bars.index.get_loc(feats.index[t])
    total = 0.0
    for k in range(pos - 20, pos + 1):
        total += np.log(bars["high"].iloc[k] / bars["low"].iloc[k]) ** 2
    expected = (total / 21 / (4 * np.log(2))) ** 0.5
    assert feats["parkinson_vol_21"].iloc[t] == pytest.approx(expected, rel=1e-5)


def test_build_volume_z_is_zero_for_constant_volume() -> None:
    bars = load_bars(["SP500"], start="2010-01-01", end="2010-12-31").copy()
    bars["volume"] = 1000.0
    spec = make_spec("vz", 1, [{"kind": "volume_z", "window": 5}])
    assert (FeatureBuilder(spec).build(bars).frame["volume_z_5"] == 0).all()


@settings(max_examples=25, deadline=None)
@given(cut=st.integers(70, 400), seed=st.integers(0, 2**31))
def test_build_is_causal_future_bars_do_not_change_past_rows(cut: int, seed: int) -> None:
    bars = DAILY.frame
    stamps = bars.index.get_level_values("timestamp").unique()
    t = stamps[cut]
    rng = np.random.default_rng(seed)
    future = bars.index.get_level_values("timestamp") > t
    perturbed = bars.copy()
    scale = rng.uniform(0.5, 2.0, size=int(future.sum()))
    perturbed.loc[future, ["open", "high", "low", "close"]] = (
        perturbed.loc[future, ["open", "high", "low", "close"]].to_numpy() * scale[:, None]
    )
    perturbed.loc[future, "volume"] = perturbed.loc[future, "volume"].to_numpy() * rng.uniform(0, 3, int(future.sum()))
    builder = FeatureBuilder.default()
    a = builder.build(bars).frame
    b = builder.build(perturbed).frame
    past = a.index.get_level_values("timestamp") <= t
    pd.testing.assert_frame_equal(a[past], b[past])
    assert not a[~past].equals(b[~past])  # the perturbation did reach the rows after t


def test_build_validates_input_bars_with_data_rules() -> None:
    bad = DAILY.frame.copy()
    bad.iloc[50, 3] = np.nan
    with pytest.raises(DataValidationError) as info:
        FeatureBuilder.default().build(bad)
    assert info.value.rule == "non_finite"


def test_build_too_few_bars_for_warmup_names_symbol() -> None:
    bars = load_bars(["SP500"], start="2010-01-01", end="2010-02-15")
    with pytest.raises(DataValidationError, match="warm-up") as info:
        FeatureBuilder.default().build(bars)
    assert info.value.symbol == "SP500"


def test_validate_passes_on_matching_hashes(built) -> None:  # type: ignore[no-untyped-def]
    built.validate(FeatureBuilder.default().schema_hash, DAILY.fingerprint)


def test_validate_schema_mismatch_names_expected_and_actual(built) -> None:  # type: ignore[no-untyped-def]
    other = make_spec("default_daily", 2, [{"kind": "log_return", "horizon": 1}]).schema_hash
    with pytest.raises(FeatureSchemaMismatch) as info:
        built.validate(other)
    assert info.value.expected == other and info.value.actual == built.schema_hash
    assert other in str(info.value) and built.schema_hash in str(info.value)


def test_validate_fingerprint_mismatch_fails(built) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(FeatureSchemaMismatch, match="dataset_fingerprint"):
        built.validate(built.schema_hash, "0" * 64)


def test_notebook_api_builds_default_features_on_sp500() -> None:
    features = FeatureBuilder.default().build(load_bars(["SP500"]))
    assert len(features.frame) == 5031 - 62
    assert features.schema_hash == FeatureBuilder.default().spec.schema_hash


def test_intraday_spec_builds_on_stoxx_minutes() -> None:
    from hydra.utils import instantiate

    from tests.conftest import compose_config

    cfg = compose_config(["features=default_intraday", "data=intraday_stoxx"])
    spec = instantiate(cfg.features, _convert_="all")
    features = FeatureBuilder(spec).build(load(instantiate(cfg.data, _convert_="all")))
    assert len(features.frame) == 30889 - spec.warmup
