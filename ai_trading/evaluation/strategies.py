"""Strategies the walk-forward fits and evaluates: the supervised ML strategy and the rule baselines.

A :class:`Strategy` is fitted on a training window of rows (``fit(inputs, start, stop)``) and returns a
:class:`FittedStrategy` that produces target weights for any later rows (``targets(inputs, start, stop)``,
``(stop - start) x N``, row ``t`` decided at bar ``t``'s close). :func:`make_strategy` builds one from its
plain config object (``conf/strategy/*.yaml``).

The ML strategy (the product's ML training and inference path) regresses the log return that a
position decided at row ``t`` and held ``horizon`` bars earns under the simulator's timing,
``open(t+1) -> open(t+horizon+1)`` (:func:`~ai_trading.execution.timing.holding_log_returns`), with
``ridge``, or classifies its sign (``logistic``), on the unified features pooled over symbols. The
regularisation is chosen by purged k-fold cross-validation (:class:`PurgedKFold`, label spans from the
decision row to the label's end row ``t + horizon + 1``, embargo) inside the training window, whose
labels all end inside it. The prediction, standardised by its in-sample dispersion, maps to a weight
``clip(gain * z, lo, max_weight) / n_symbols``. The fitted object records the feature schema hash it was
trained on and the time span of its training labels (first decision to last label end):
``predict`` validates the :class:`FeatureSet` against the schema and raises
:class:`~ai_trading.errors.FeatureSchemaMismatch` on another one, and
:func:`check_evaluation_window` refuses to evaluate a saved model on dates its labels covered.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import joblib
import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy.special import expit
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from ai_trading.errors import ConfigError, EvaluationError, FeatureSchemaMismatch, InSampleEvaluationError
from ai_trading.evaluation.backtest import decision_mask
from ai_trading.evaluation.baselines import (
    BuyAndHoldConfig,
    CashConfig,
    TrendConfig,
    buy_and_hold_weights,
    cash_weights,
    trend_weights,
)
from ai_trading.evaluation.purged_cv import PurgedKFold
from ai_trading.execution import MarketArrays
from ai_trading.execution.timing import holding_log_returns
from ai_trading.features import FeatureSet

log = logging.getLogger(__name__)

ML_STRATEGY_FILE = "ml_strategy.joblib"  # the fitted strategy inside a model directory

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class StrategyInputs:
    """The market window and its features as wide arrays aligned to the market's rows and symbols:
    ``X`` is ``T x N x F`` (NaN where a symbol has no feature row: no bar, or warm-up), ``has_features``
    ``T x N``."""

    market: MarketArrays
    features: FeatureSet | None
    periods_per_year: float
    X: FloatArray
    has_features: BoolArray

    @classmethod
    def build(cls, market: MarketArrays, features: FeatureSet | None, periods_per_year: float) -> StrategyInputs:
        T, N = market.open.shape
        if features is None:
            return cls(market, None, periods_per_year, np.full((T, N, 0), np.nan), np.zeros((T, N), dtype=bool))
        names = list(features.feature_names)
        wide = features.frame.loc[:, names].astype(np.float64).unstack("symbol")
        wide = wide.reindex(index=market.timestamps)
        X = np.stack([pd.DataFrame(wide[name]).reindex(columns=list(market.symbols)).to_numpy(np.float64)
                      for name in names],
                     axis=-1)
        has = np.isfinite(X).all(axis=-1)
        log.debug("strategy inputs rows=%d symbols=%d features=%d rows_with_features=%d", T, N, len(names),
                  int(has.sum()))
        return cls(market, features, periods_per_year, X, has)


class FittedStrategy(Protocol):
    @property
    def name(self) -> str: ...

    def targets(self, inputs: StrategyInputs, start: int, stop: int) -> FloatArray: ...

    def describe(self) -> dict[str, float]: ...


class Strategy(Protocol):
    @property
    def name(self) -> str: ...

    def fit(self, inputs: StrategyInputs, start: int, stop: int) -> FittedStrategy: ...


# --- rule strategies (baselines) -------------------------------------------------------------------------


@dataclass(frozen=True)
class RuleStrategy:
    """A causal rule with nothing to fit: ``fit`` returns itself."""

    name: str
    rule: Callable[[StrategyInputs, int, int], FloatArray]

    def fit(self, inputs: StrategyInputs, start: int, stop: int) -> RuleStrategy:
        return self

    def targets(self, inputs: StrategyInputs, start: int, stop: int) -> FloatArray:
        return self.rule(inputs, start, stop)

    def describe(self) -> dict[str, float]:
        return {}


# --- the ML strategy -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MLStrategyConfig:
    """Supervised model on the unified features; see the module docstring. ``grid`` holds the ridge
    ``alpha`` or the logistic ``C`` values tried by the purged CV."""

    name: str = "ml"
    model: Literal["ridge", "logistic"] = "ridge"
    horizon: int = 1
    grid: Sequence[float] = (0.1, 1.0, 10.0, 100.0, 1000.0)
    cv_splits: int = 5
    embargo: float = 0.01
    gain: float = 0.5
    max_weight: float = 1.0
    long_only: bool = False
    min_train_samples: int = 200

    def __post_init__(self) -> None:
        if self.model not in ("ridge", "logistic"):
            raise ConfigError(f"strategy.model={self.model!r}: expected ridge or logistic")
        if self.horizon < 1:
            raise ConfigError(f"strategy.horizon={self.horizon}: must be >= 1")
        if self.cv_splits < 2:
            raise ConfigError(f"strategy.cv_splits={self.cv_splits}: must be >= 2")
        if not self.grid or not all(isinstance(v, int | float) and not isinstance(v, bool) and v > 0
                                    for v in self.grid):
            raise ConfigError(f"strategy.grid={list(self.grid)!r}: must be a non-empty list of numbers > 0")
        if not 0.0 <= self.embargo < 1.0:
            raise ConfigError(f"strategy.embargo={self.embargo}: must be in [0, 1)")
        for key in ("gain", "max_weight"):
            if not getattr(self, key) > 0:
                raise ConfigError(f"strategy.{key}={getattr(self, key)}: must be > 0")
        if self.min_train_samples < 1:
            raise ConfigError(f"strategy.min_train_samples={self.min_train_samples}: must be >= 1")


@dataclass(frozen=True)
class TrainingLabels:
    """The labelled samples of a training window: decision rows ``t``, symbol columns ``n``, labels ``y``
    (the held position's log return) and ``t1``, each label's end time indexed by its decision time (what
    :class:`PurgedKFold` purges on), in time order."""

    t: npt.NDArray[np.intp]
    n: npt.NDArray[np.intp]
    y: FloatArray
    t1: pd.Series


def training_labels(inputs: StrategyInputs, horizon: int, start: int, stop: int) -> TrainingLabels:
    """Samples of decision rows ``[start, stop)`` with features and a label that ends before ``stop``."""
    y_all, end = holding_log_returns(inputs.market.open, inputs.market.tradable, horizon)
    rows = slice(start, stop)
    usable = inputs.has_features[rows] & (end[rows] >= 0) & (end[rows] < stop)
    t_idx, n_idx = np.nonzero(usable)  # row-major: sorted by time, as PurgedKFold needs
    t_idx = t_idx + start
    stamps = inputs.market.timestamps
    t1 = pd.Series(stamps[end[t_idx, n_idx]], index=stamps[t_idx])
    return TrainingLabels(t_idx, n_idx, y_all[t_idx, n_idx], t1)


@dataclass(frozen=True)
class FittedMLStrategy:
    """A fitted ML strategy: the scikit-learn pipeline, the schema it was trained on, the time span of its
    training labels (``train_span``: first decision, last label end) and its CV choice."""

    name: str
    config: MLStrategyConfig
    pipeline: Pipeline
    schema_hash: str
    feature_names: tuple[str, ...]
    dataset_fingerprint: str
    score_scale: float
    train_span: tuple[pd.Timestamp, pd.Timestamp]
    info: dict[str, float] = field(default_factory=dict)

    def _score(self, X: FloatArray) -> FloatArray:
        if self.config.model == "logistic":
            return np.asarray(self.pipeline.predict_proba(X)[:, 1] - 0.5, dtype=np.float64)
        return np.asarray(self.pipeline.predict(X), dtype=np.float64)

    def predict(self, features: FeatureSet, X: FloatArray) -> FloatArray:
        """Standardised scores of the rows ``X`` (``M x F``); fails fast when ``features`` (where ``X`` came
        from) was built with another schema than the training features."""
        features.validate(self.schema_hash)
        if tuple(features.feature_names) != self.feature_names:
            raise FeatureSchemaMismatch("feature_names", ",".join(self.feature_names),
                                        ",".join(features.feature_names))
        if X.shape[0] == 0:
            return np.zeros(0)
        return self._score(X) / self.score_scale

    def targets(self, inputs: StrategyInputs, start: int, stop: int) -> FloatArray:
        if inputs.features is None:
            raise EvaluationError(f"strategy {self.name!r} needs features")
        N = inputs.market.open.shape[1]
        mask = inputs.has_features[start:stop] & decision_mask(inputs.market)[start:stop]
        z = np.zeros(mask.shape)
        z[mask] = self.predict(inputs.features, inputs.X[start:stop][mask])
        return self.weights(z, N)

    def weights(self, z: FloatArray, n_symbols: int) -> FloatArray:
        """Target weights of standardised scores ``z`` for a book of ``n_symbols``."""
        lo = 0.0 if self.config.long_only else -self.config.max_weight
        return np.clip(self.config.gain * z, lo, self.config.max_weight) / n_symbols

    def score_rows(self, X: FloatArray) -> FloatArray:
        """Standardised scores of feature rows ``X`` (``M x F``, the columns of :attr:`feature_names`): the
        numbers of :meth:`_score`, computed by the pipeline's own arithmetic on its fitted arrays (the scaler's
        centring and scaling, the linear model's ``X @ coef + intercept``, the logistic's probability) without
        scikit-learn's per-call input checks, which cost a one-bar caller (the live loop) more than the model.
        What those checks refused is refused here by name: another number of columns, a NaN or inf."""
        if X.ndim != 2 or X.shape[1] != len(self.feature_names):
            raise FeatureSchemaMismatch("score rows columns", str(len(self.feature_names)),
                                        str(X.shape[1] if X.ndim == 2 else X.shape))
        if not X.shape[0]:
            return np.zeros(0)
        if not np.isfinite(X).all():
            raise EvaluationError(f"strategy {self.name!r}: a feature row holds NaN or inf")
        scaler, model = self._fitted_steps()
        if X.dtype.kind != "f":
            X = X.astype(np.float64)
        if scaler.with_mean:
            X = X - scaler.mean_.astype(X.dtype)
        if scaler.with_std:
            X = X / scaler.scale_.astype(X.dtype)
        if isinstance(model, LogisticRegression):
            decision = (X @ model.coef_.T + model.intercept_).reshape(-1)
            return np.asarray(expit(decision) - 0.5, dtype=np.float64) / self.score_scale
        return np.asarray(X @ model.coef_ + model.intercept_, dtype=np.float64) / self.score_scale

    def _fitted_steps(self) -> tuple[StandardScaler, Ridge | LogisticRegression]:
        """The pipeline :meth:`MLStrategy.fit` builds (a scaler, then a ridge or a binary logistic model):
        :meth:`score_rows` computes from their fitted arrays, so any other pipeline is refused by name."""
        steps = [step for _, step in self.pipeline.steps]
        if (len(steps) == 2 and type(steps[0]) is StandardScaler
                and ((type(steps[1]) is Ridge and np.ndim(steps[1].coef_) == 1)
                     or (type(steps[1]) is LogisticRegression and len(steps[1].classes_) == 2))):
            return steps[0], steps[1]
        raise EvaluationError(f"strategy {self.name!r}: pipeline {[type(s).__name__ for s in steps]} is not the "
                              "scaler and ridge or binary logistic model this strategy fits")

    def describe(self) -> dict[str, float]:
        return dict(self.info)

    def save(self, path: str | Path) -> None:
        """Pickle the fitted strategy (joblib). Only the verified loader (:mod:`ai_trading.artifacts.loader`)
        opens it again, after the manifest signed beside it verifies."""
        joblib.dump(self, Path(path))


def check_evaluation_window(fitted: FittedMLStrategy, first: pd.Timestamp, last: pd.Timestamp, *,
                            allow_in_sample: bool = False) -> bool:
    """Whether evaluating ``fitted`` on ``[first, last]`` (first decision to last fill) is in sample, i.e.
    overlaps its training span.

    An overlap raises :class:`~ai_trading.errors.InSampleEvaluationError` naming both ranges, unless
    ``allow_in_sample``: then it is logged as a warning and the caller must label every result in-sample.
    """
    lo, hi = fitted.train_span
    window = (pd.Timestamp(first), pd.Timestamp(last))
    if window[0] > window[1]:
        raise EvaluationError(f"evaluation window {window[0]} to {window[1]} ends before it starts")
    in_sample = window[0] <= hi and window[1] >= lo
    if in_sample:
        if not allow_in_sample:
            raise InSampleEvaluationError(fitted.name, (lo, hi), window)
        log.warning("in-sample evaluation model=%s train_span=%s..%s window=%s..%s: every metric is in-sample",
                    fitted.name, lo, hi, window[0], window[1])
    return in_sample


@dataclass(frozen=True)
class PretrainedStrategy:
    """A fitted strategy loaded from disk and evaluated as is: every fold uses it without refitting."""

    fitted: FittedMLStrategy

    @property
    def name(self) -> str:
        return self.fitted.name

    def fit(self, inputs: StrategyInputs, start: int, stop: int) -> FittedMLStrategy:
        return self.fitted


@dataclass(frozen=True)
class MLStrategy:
    """Fits a :class:`FittedMLStrategy` on a training window of rows."""

    config: MLStrategyConfig

    @property
    def name(self) -> str:
        return self.config.name

    def fit(self, inputs: StrategyInputs, start: int, stop: int) -> FittedMLStrategy:
        """Fit on decision rows ``[start, stop)`` using only labels that end before ``stop`` (inside the
        training window)."""
        cfg = self.config
        if inputs.features is None:
            raise EvaluationError(f"strategy {cfg.name!r} needs features")
        labels = training_labels(inputs, cfg.horizon, start, stop)
        if len(labels.y) < max(cfg.min_train_samples, cfg.cv_splits * 2):
            raise EvaluationError(f"strategy {cfg.name!r}: {len(labels.y)} training samples in rows [{start}, "
                                  f"{stop}), need at least {cfg.min_train_samples}")
        X = inputs.X[labels.t, labels.n]
        y = labels.y
        cv = PurgedKFold(n_splits=cfg.cv_splits, t1=labels.t1, embargo=cfg.embargo)
        span = (pd.Timestamp(labels.t1.index[0]), pd.Timestamp(labels.t1.max()))
        if cfg.model == "logistic":
            estimator: Any = LogisticRegression(max_iter=500)
            grid = {"model__C": [float(g) for g in cfg.grid]}
            target: FloatArray = (y > 0).astype(np.float64)
            scoring = "neg_log_loss"
        else:
            estimator = Ridge()
            grid = {"model__alpha": [float(g) for g in cfg.grid]}
            target = y
            scoring = "neg_mean_squared_error"
        search = GridSearchCV(Pipeline([("scale", StandardScaler()), ("model", estimator)]), grid, cv=cv,
                              scoring=scoring, refit=True, n_jobs=1)
        search.fit(X, target)
        pipeline: Pipeline = search.best_estimator_
        fitted = FittedMLStrategy(cfg.name, cfg, pipeline, inputs.features.schema_hash,
                                  tuple(inputs.features.feature_names), inputs.features.dataset_fingerprint, 1.0,
                                  span)
        raw = fitted._score(X)
        scale = float(np.std(raw))
        best = float(next(iter(search.best_params_.values())))
        info = {"train_samples": float(len(y)), "cv_best_param": best, "cv_best_score": float(search.best_score_),
                "in_sample_score_std": scale}
        log.info("ml strategy fitted rows=[%d,%d) samples=%d labels=%s..%s model=%s best=%g cv_score=%.6g", start,
                 stop, len(y), span[0], span[1], cfg.model, best, search.best_score_)
        return FittedMLStrategy(cfg.name, cfg, pipeline, fitted.schema_hash, fitted.feature_names,
                                fitted.dataset_fingerprint, scale if scale > 0 else 1.0, span, info)


# --- factory ---------------------------------------------------------------------------------------------

StrategyConfig = MLStrategyConfig | TrendConfig | BuyAndHoldConfig | CashConfig


def make_strategy(config: StrategyConfig) -> Strategy:
    """The strategy of a config object (``conf/strategy/*.yaml`` instantiates one)."""
    if isinstance(config, MLStrategyConfig):
        return MLStrategy(config)
    if isinstance(config, TrendConfig):
        trend = config
        return RuleStrategy(config.name, lambda i, a, b: trend_weights(i.market, trend, i.periods_per_year, a, b))
    if isinstance(config, BuyAndHoldConfig):
        return RuleStrategy(config.name, lambda i, a, b: buy_and_hold_weights(i.market, a, b))
    if isinstance(config, CashConfig):
        return RuleStrategy(config.name, lambda i, a, b: cash_weights(i.market, a, b))
    raise ConfigError(f"no strategy for config {type(config).__name__}")


BASELINES: dict[str, Callable[[], StrategyConfig]] = {
    "buy_and_hold": BuyAndHoldConfig,
    "cash": CashConfig,
    "trend": TrendConfig,
}


def baseline_strategy(name: str) -> Strategy:
    """A baseline by name (``buy_and_hold``, ``cash``, ``trend``) with its default parameters."""
    if name not in BASELINES:
        raise ConfigError(f"unknown baseline {name!r}; expected one of {sorted(BASELINES)}")
    return make_strategy(BASELINES[name]())
