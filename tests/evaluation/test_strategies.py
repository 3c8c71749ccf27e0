"""The ML strategy: learns a predictable signal, never sees labels past its training window, records the
span of its training labels and refuses evaluation windows that overlap it, and fails fast on features of
another schema (also when loaded from its signed model directory); the strategy factory."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ai_trading.artifacts.build import Provenance, sign_directory
from ai_trading.artifacts.config import SigningConfig
from ai_trading.artifacts.keys import load_signer
from ai_trading.artifacts.loader import Expectations, load_model
from ai_trading.errors import (
    ConfigError,
    FeatureSchemaMismatch,
    InSampleEvaluationError,
    ProvenanceMismatch,
)
from ai_trading.evaluation.baselines import BuyAndHoldConfig, TrendConfig
from ai_trading.evaluation.strategies import (
    ML_STRATEGY_FILE,
    FittedMLStrategy,
    MLStrategy,
    MLStrategyConfig,
    RuleStrategy,
    StrategyInputs,
    check_evaluation_window,
    make_strategy,
    training_labels,
)
from ai_trading.execution import MarketArrays, SimulatorConfig
from ai_trading.execution.market import build_execution
from ai_trading.features import FeatureBuilder, make_spec

N_BARS = 900


def _mean_reverting_bars(n: int = N_BARS, seed: int = 0) -> pd.DataFrame:
    """Daily returns with strong negative autocorrelation: the last return predicts the next one."""
    rng = np.random.default_rng(seed)
    r = np.zeros(n)
    for t in range(1, n):
        r[t] = -0.7 * r[t - 1] + rng.normal(0.0, 0.01)
    close = 100.0 * np.exp(np.cumsum(r))
    opn = np.concatenate(([close[0]], close[:-1]))
    ts = pd.bdate_range("2001-01-01", periods=n, tz="UTC", name="timestamp")
    frame = pd.DataFrame({"open": opn, "high": np.maximum(opn, close) * 1.002, "low": np.minimum(opn, close) * 0.998,
                          "close": close, "volume": rng.uniform(1e6, 2e6, n)}, index=ts)
    return frame.assign(symbol="MR").set_index("symbol", append=True)


@pytest.fixture(scope="module")
def mr_inputs() -> StrategyInputs:
    bars = _mean_reverting_bars()
    market = MarketArrays.from_bars(bars, SimulatorConfig())
    return StrategyInputs.build(market, FeatureBuilder.default().build(bars), 252.0)


def test_ml_strategy_on_mean_reverting_data_bets_against_the_last_return(mr_inputs: StrategyInputs) -> None:
    fitted = MLStrategy(MLStrategyConfig(cv_splits=3)).fit(mr_inputs, 63, 600)
    w = fitted.targets(mr_inputs, 600, 899)
    last_return = np.log(mr_inputs.market.close[600:899, 0] / mr_inputs.market.close[599:898, 0])
    agree = np.mean(np.sign(w[:, 0]) == -np.sign(last_return))
    assert agree > 0.9
    assert np.abs(w).max() <= 1.0
    assert fitted.info["train_samples"] == 600 - 63 - 2  # decision 598's label ends at row 600: excluded


def test_ml_logistic_long_only_weights_are_in_zero_to_max(mr_inputs: StrategyInputs) -> None:
    cfg = MLStrategyConfig(model="logistic", grid=(0.1, 1.0), cv_splits=3, long_only=True, max_weight=0.5)
    w = MLStrategy(cfg).fit(mr_inputs, 63, 600).targets(mr_inputs, 600, 899)
    assert w.min() >= 0.0 and w.max() <= 0.5 and (w > 0).mean() > 0.3


def test_ml_fit_is_unchanged_by_bars_after_the_training_window() -> None:
    bars = _mean_reverting_bars()
    stop = 500
    cut = bars.iloc[:stop]
    builder = FeatureBuilder.default()
    full = StrategyInputs.build(MarketArrays.from_bars(bars, SimulatorConfig()), builder.build(bars), 252.0)
    part = StrategyInputs.build(MarketArrays.from_bars(cut, SimulatorConfig()), builder.build(cut), 252.0)
    strategy = MLStrategy(MLStrategyConfig(cv_splits=3))
    a, b = strategy.fit(full, 63, stop), strategy.fit(part, 63, stop)
    np.testing.assert_allclose(a.pipeline[-1].coef_, b.pipeline[-1].coef_, rtol=1e-10)
    assert a.info == b.info


def test_ml_predict_on_features_of_another_schema_raises_feature_schema_mismatch(mr_inputs: StrategyInputs,
                                                                                 tmp_path: Path) -> None:
    fitted = MLStrategy(MLStrategyConfig(cv_splits=3)).fit(mr_inputs, 63, 600)
    bars = _mean_reverting_bars()
    other_spec = make_spec("default_daily", 2, [{"kind": "log_return", "horizon": 1},
                                                {"kind": "realized_vol", "window": 10}])
    other = StrategyInputs.build(mr_inputs.market, FeatureBuilder(other_spec).build(bars), 252.0)
    with pytest.raises(FeatureSchemaMismatch, match="feature_schema_hash"):
        fitted.targets(other, 600, 899)
    directory = _signed(fitted, tmp_path)
    with pytest.raises(ProvenanceMismatch, match="feature_schema_hash"):
        load_model(directory, SigningConfig.default(), Expectations(other_spec.schema_hash, None, None))
    loaded = load_model(directory, SigningConfig.default(), Expectations(fitted.schema_hash, None, None)).model
    np.testing.assert_array_equal(loaded.targets(mr_inputs, 600, 899), fitted.targets(mr_inputs, 600, 899))


def _signed(fitted: FittedMLStrategy, tmp_path: Path) -> Path:
    """``fitted`` saved in a model directory with a manifest signed by the local key (what evaluate logs)."""
    directory = tmp_path / "model"
    directory.mkdir()
    fitted.save(directory / ML_STRATEGY_FILE)
    provenance = Provenance(fitted.schema_hash, fitted.dataset_fingerprint, "c" * 64, "0" * 64, "abc", False, 0, "s",
                            "r")
    sign_directory(directory, kind="ml", provenance=provenance, metrics={},
                   policy={"feature_names": list(fitted.feature_names)},
                   signer=load_signer(SigningConfig.default()), config=SigningConfig.default())
    return directory


def test_training_labels_are_next_open_to_open_returns_whose_t1_is_their_true_end_inside_the_window() -> None:
    from ai_trading.data import load_bars

    bars = load_bars(["NVDA", "SP500"], start="1999-01-01", end="1999-12-31")  # NVDA starts 1999-01-22
    market = MarketArrays.from_bars(bars, SimulatorConfig())
    inputs = StrategyInputs.build(market, FeatureBuilder.default().build(bars), 252.0)
    h, start, stop = 3, 0, 150
    labels = training_labels(inputs, h, start, stop)
    stamps = market.timestamps
    nvda = bars.xs("NVDA", level="symbol")["open"]
    n = market.symbols.index("NVDA")
    first = int(labels.t[labels.n == n][0])  # NVDA's first row with features
    assert stamps[first] == nvda.index[FeatureBuilder.default().spec.warmup]
    k = nvda.index.get_loc(stamps[first])
    at = np.flatnonzero((labels.t == first) & (labels.n == n))[0]
    assert labels.y[at] == pytest.approx(np.log(nvda.iloc[k + h + 1] / nvda.iloc[k + 1]), rel=1e-12)
    # t1 is each label's last price row (the exit open), every one of them inside the training window
    np.testing.assert_array_equal(labels.t1.to_numpy(), stamps[labels.t + h + 1].to_numpy())
    np.testing.assert_array_equal(labels.t1.index, stamps[labels.t])
    assert labels.t1.max() == stamps[stop - 1] and labels.t.max() == stop - h - 2


def test_fitted_model_records_its_label_span_and_refuses_windows_that_overlap_it(
        mr_inputs: StrategyInputs, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    stamps = mr_inputs.market.timestamps
    fitted = MLStrategy(MLStrategyConfig(cv_splits=3)).fit(mr_inputs, 63, 600)
    assert fitted.train_span == (stamps[63], stamps[599])  # first decision, last label end (exit open)
    loaded = load_model(_signed(fitted, tmp_path), SigningConfig.default(),
                        Expectations(fitted.schema_hash, None, None)).model
    assert loaded.train_span == fitted.train_span
    assert check_evaluation_window(loaded, stamps[600], stamps[899]) is False
    for window in ((stamps[599], stamps[899]), (stamps[0], stamps[63]), (stamps[100], stamps[200])):
        with pytest.raises(InSampleEvaluationError) as err:
            check_evaluation_window(loaded, *window)
        assert str(stamps[63]) in str(err.value) and str(stamps[599]) in str(err.value)
        assert str(window[0]) in str(err.value) and str(window[1]) in str(err.value)
    with caplog.at_level(logging.WARNING, logger="ai_trading.evaluation.strategies"):
        assert check_evaluation_window(loaded, stamps[500], stamps[899], allow_in_sample=True) is True
    assert "in-sample" in caplog.text


def test_make_strategy_builds_each_kind_and_rejects_unknown_config() -> None:
    assert isinstance(make_strategy(MLStrategyConfig()), MLStrategy)
    trend = make_strategy(TrendConfig(name="t"))
    assert isinstance(trend, RuleStrategy) and trend.name == "t"
    assert make_strategy(BuyAndHoldConfig()).name == "buy_and_hold"
    with pytest.raises(ConfigError):
        make_strategy(object())  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        MLStrategyConfig(model="forest")  # type: ignore[arg-type]


def test_strategy_inputs_mark_rows_without_features_for_later_listed_symbol() -> None:
    from ai_trading.data import load_bars

    bars = load_bars(["NVDA", "ORCL"], start="1998-06-01", end="1999-12-31")
    market, _ = build_execution(bars, SimulatorConfig())
    inputs = StrategyInputs.build(market, FeatureBuilder.default().build(bars), 252.0)
    n = market.symbols.index("NVDA")
    nvda_dates = bars.xs("NVDA", level="symbol").index
    warmup = FeatureBuilder.default().spec.warmup
    first_feature = market.timestamps.get_loc(nvda_dates[warmup])  # NVDA's own bars, after the warm-up
    assert not inputs.has_features[:first_feature, n].any()
    assert inputs.has_features[first_feature, n]
