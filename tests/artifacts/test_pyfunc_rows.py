"""The ML pyfunc's one-bar path: the scores the live loop gets from the fitted arrays (``score_rows``) are, bit
for bit, the scikit-learn pipeline's (``predict`` / ``predict_proba``, what evaluation scores with), and the
bound array entry (``PolicyModel.rows(...).weights``) gives what ``predict(DataFrame)`` gives on the same rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from ai_trading.artifacts.manifest import Manifest
from ai_trading.artifacts.pyfunc import TARGET, PolicyModel
from ai_trading.errors import EvaluationError, FeatureSchemaMismatch
from ai_trading.evaluation.strategies import FittedMLStrategy, MLStrategyConfig

NAMES = ("a", "b", "c", "d", "e")
SYMBOLS = ["NVDA", "ORCL", "SP500"]


def _fitted(model: str, estimator: object, *, seed: int = 0) -> FittedMLStrategy:
    rng = np.random.default_rng(seed)
    X = rng.normal(loc=3.0, scale=[1.0, 0.01, 50.0, 2.0, 1e-4], size=(400, len(NAMES)))
    y = X @ rng.normal(size=len(NAMES)) * 1e-3 + rng.normal(scale=1e-2, size=400)
    target = (y > 0).astype(np.float64) if model == "logistic" else y
    pipeline = Pipeline([("scale", StandardScaler()), ("model", estimator)]).fit(X, target)
    stamp = pd.Timestamp("2020-01-01", tz="UTC")
    return FittedMLStrategy("ml", MLStrategyConfig(model=model, gain=0.7), pipeline, "f", NAMES, "d", 0.37,
                            (stamp, stamp))


def _manifest() -> Manifest:
    return Manifest(kind="ml", files={"x": "0"}, feature_schema_hash="f", dataset_fingerprint="d",
                    cost_model_hash="c", config_hash="h", git_commit="g", git_dirty=False, seed=0, sweep_id="s",
                    run_id="r", metrics={}, created_at="2026-01-01T00:00:00Z", key_id="k", algorithm="ed25519",
                    dev_key=False, policy={"feature_names": list(NAMES)})


@pytest.mark.parametrize(("model", "estimator"), [("ridge", Ridge(alpha=0.3)), ("logistic", LogisticRegression())])
def test_score_rows_equals_the_pipelines_scores_bit_for_bit(model: str, estimator: object) -> None:
    fitted = _fitted(model, estimator)
    rng = np.random.default_rng(1)
    for rows in (1, 2, 3, 17, 500):
        X = rng.normal(loc=3.0, scale=[1.0, 0.01, 50.0, 2.0, 1e-4], size=(rows, len(NAMES)))
        for batch in (X, X.astype(np.float32)):
            expected = fitted._score(batch) / fitted.score_scale  # scikit-learn's own predict path
            got = fitted.score_rows(batch)
            assert got.dtype == np.float64
            np.testing.assert_array_equal(got, expected)
    assert fitted.score_rows(np.zeros((0, len(NAMES)))).shape == (0,)


def test_score_rows_refuses_what_the_pipeline_refused() -> None:
    fitted = _fitted("ridge", Ridge())
    X = np.ones((2, len(NAMES)))
    X[1, 2] = np.nan
    with pytest.raises(EvaluationError, match="NaN or inf"):
        fitted.score_rows(X)
    with pytest.raises(FeatureSchemaMismatch, match="columns"):
        fitted.score_rows(np.ones((2, len(NAMES) - 1)))
    other = _fitted("ridge", LinearRegression())
    with pytest.raises(EvaluationError, match="LinearRegression"):
        other.score_rows(np.ones((2, len(NAMES))))


@pytest.mark.parametrize(("model", "estimator"), [("ridge", Ridge(alpha=0.3)), ("logistic", LogisticRegression())])
def test_bound_rows_give_what_predict_gives_on_the_same_rows(model: str, estimator: object) -> None:
    fitted = _fitted(model, estimator)
    policy = PolicyModel(_manifest(), fitted)
    rng = np.random.default_rng(2)
    # the caller's columns in another order, with columns the model does not read
    columns = ["weight", "e", "c", "zz", "a", "d", "b"]
    rows = policy.rows(SYMBOLS, columns)
    for _ in range(20):
        values = rng.normal(loc=3.0, scale=1.0, size=(len(SYMBOLS), len(columns)))
        frame = pd.DataFrame(values, index=pd.Index(SYMBOLS, name="symbol"), columns=columns)
        predicted = policy.predict(frame)
        assert list(predicted.index) == SYMBOLS and list(predicted.columns) == [TARGET]
        bound = rows.weights(values, np.zeros(len(SYMBOLS)), 0.0, 0.0)
        np.testing.assert_array_equal(bound, predicted[TARGET].to_numpy())
        X = frame[list(NAMES)].to_numpy(np.float64)
        expected = fitted.weights(fitted._score(X) / fitted.score_scale, len(SYMBOLS))
        np.testing.assert_array_equal(bound, expected)
        np.testing.assert_array_equal(policy.predict(frame.reset_index())[TARGET].to_numpy(), bound)


def test_binding_checks_the_names_once() -> None:
    policy = PolicyModel(_manifest(), _fitted("ridge", Ridge()))
    with pytest.raises(FeatureSchemaMismatch, match="pyfunc input columns"):
        policy.rows(SYMBOLS, ["a", "b", "c", "d"])
    with pytest.raises(FeatureSchemaMismatch, match="pyfunc input columns"):
        policy.rows(SYMBOLS, ["a", "b", "c", "d", "e", "a"])
    rows = policy.rows(SYMBOLS, list(NAMES))
    with pytest.raises(FeatureSchemaMismatch, match="policy input shape"):
        rows.weights(np.ones((2, len(NAMES))), np.zeros(2), 0.0, 0.0)
