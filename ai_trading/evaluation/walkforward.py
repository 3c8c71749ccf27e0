"""Walk-forward evaluation: fit per fold on its training window, trade its test window, stitch the
out-of-sample (OOS) segments, and report baselines side by side on the same simulator and costs.

Folds split the decision rows after the first training window (``[first_test, T - 1)``; the last row has
no next bar to execute on) into ``n_folds`` contiguous test blocks. The training window of a fold is the
``train_bars`` rows before its test block (``scheme=rolling``) or every row from the first one with
features (``expanding``); the ML strategy only uses labels that end inside it.

Stitching: each fold's fitted strategy writes the target weights of its test rows; the stitched weights
then run as ONE continuous simulation over the OOS span (positions and cash carry across fold
boundaries, as they would live). Per-fold metrics are the segments of that run; overall metrics the
whole run. Baselines have nothing to fit and run over the same span. Equity comes only from simulated
fills.

Folds fit independently, so their fits run serially, in joblib worker processes or as Ray tasks
(``backend``); each fold's fit runs under the same seed (``seed + fold index``) whatever the backend, so
every backend gives the serial result to the bit. The stitched simulation stays one serial run.

Entry point: ``python -m ai_trading.evaluate strategy=ml data.symbols=[SP500]`` (config
``conf/evaluate.yaml``).
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ai_trading.errors import ConfigError, EvaluationError, MissingExtraError
from ai_trading.evaluation.backtest import BacktestResult, backtest, segment_metrics
from ai_trading.evaluation.strategies import (
    FittedStrategy,
    Strategy,
    StrategyInputs,
    baseline_strategy,
)
from ai_trading.execution import ExecParams, MarketArrays
from ai_trading.execution.market import slice_market
from ai_trading.features import FeatureSet

log = logging.getLogger(__name__)

BACKENDS = ("serial", "joblib", "ray")
FOLD_METRICS = ("total_return", "annualized_return", "sharpe", "max_drawdown", "turnover", "cost_total",
                "traded_notional", "exposure")


@dataclass(frozen=True)
class WalkForwardConfig:
    """Fold layout and capital. ``test_bars`` null splits the whole OOS span evenly into ``n_folds``;
    otherwise each test block has ``test_bars`` rows and the folds end there."""

    n_folds: int = 5
    scheme: Literal["rolling", "expanding"] = "expanding"
    train_bars: int = 756
    test_bars: int | None = None
    initial_cash: float = 1_000_000.0
    seed: int = 0
    baselines: Sequence[str] = ("buy_and_hold", "cash", "trend")
    show_progress: bool = True
    backend: Literal["serial", "joblib", "ray"] = "serial"
    n_jobs: int = 1
    ray_address: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "baselines", tuple(self.baselines))
        if self.n_folds < 1:
            raise ConfigError(f"walkforward.n_folds={self.n_folds}: must be >= 1")
        if self.train_bars < 2:
            raise ConfigError(f"walkforward.train_bars={self.train_bars}: must be >= 2")
        if self.scheme not in ("rolling", "expanding"):
            raise ConfigError(f"walkforward.scheme={self.scheme!r}: expected rolling or expanding")
        if self.test_bars is not None and self.test_bars < 2:
            raise ConfigError(f"walkforward.test_bars={self.test_bars}: must be >= 2")
        if not (math.isfinite(self.initial_cash) and self.initial_cash > 0):
            raise ConfigError(f"walkforward.initial_cash={self.initial_cash}: must be > 0")
        if self.backend not in BACKENDS:
            raise ConfigError(f"walkforward.backend={self.backend!r}: expected one of {', '.join(BACKENDS)}")
        if self.n_jobs < 1:
            raise ConfigError(f"walkforward.n_jobs={self.n_jobs}: must be >= 1")
        if self.ray_address is not None and self.backend != "ray":
            raise ConfigError(f"walkforward.ray_address={self.ray_address!r} is set but walkforward.backend="
                              f"{self.backend!r}: it only applies to backend=ray")


@dataclass(frozen=True)
class Fold:
    """Row ranges of the market: train ``[train_start, train_stop)``, test decisions ``[test_start,
    test_stop)`` (their fills land on rows ``test_start + 1 .. test_stop``)."""

    index: int
    train_start: int
    train_stop: int
    test_start: int
    test_stop: int


def make_folds(first_row: int, n_rows: int, config: WalkForwardConfig) -> list[Fold]:
    """Folds over market rows ``[first_row, n_rows)``: ``first_row`` is the first row with features."""
    first_test = first_row + config.train_bars
    last_decision = n_rows - 1  # exclusive: the last row has no next bar
    if config.test_bars is not None:
        stop = min(first_test + config.n_folds * config.test_bars, last_decision)
    else:
        stop = last_decision
    if stop - first_test < 2 * config.n_folds:
        needed = config.train_bars + 2 * config.n_folds + 1
        raise EvaluationError(
            f"walk-forward: {config.n_folds} folds after {config.train_bars} training bars need at least {needed} "
            f"bars with features, the data have {max(n_rows - first_row, 0)} (the first {first_row} of {n_rows} "
            f"bars are the features' warm-up): lower walkforward.train_bars or walkforward.n_folds, or widen "
            f"data.start/data.end")
    blocks = np.array_split(np.arange(first_test, stop), config.n_folds)
    folds = []
    for k, block in enumerate(blocks):
        a, b = int(block[0]), int(block[-1]) + 1
        train_start = first_row if config.scheme == "expanding" else a - config.train_bars
        folds.append(Fold(k, train_start, a, a, b))
    return folds


@dataclass(frozen=True)
class WalkForwardResult:
    """The stitched strategy and baselines (each with per-fold metrics in ``folds``), the folds, per-fold
    model information and the wall time."""

    strategy: str
    results: dict[str, BacktestResult]
    folds: list[Fold]
    fold_info: pd.DataFrame
    elapsed_seconds: float
    last_fitted: FittedStrategy | None = None  # the last fold's model: the one to deploy or re-evaluate
    extra: dict[str, Any] = field(default_factory=dict)
    backend: str = "serial"


def _fold_table(result: BacktestResult, folds: Sequence[Fold], offset: int) -> pd.DataFrame:
    rows = []
    ts = result.equity.index
    for f in folds:
        a, b = f.test_start - offset, f.test_stop - offset
        net, gross = segment_metrics(result, a, b)
        row: dict[str, Any] = {"fold": f.index, "start": ts[a], "end": ts[b], "periods": b - a}
        row.update({f"net_{k}": net[k] for k in FOLD_METRICS})
        row.update({f"gross_{k}": gross[k] for k in ("total_return", "annualized_return", "sharpe",
                                                      "max_drawdown")})
        rows.append(row)
    return pd.DataFrame(rows)


def run_walkforward(
    market: MarketArrays,
    params: ExecParams,
    features: FeatureSet | None,
    strategy: Strategy,
    config: WalkForwardConfig,
) -> WalkForwardResult:
    """Walk-forward of ``strategy`` with the configured baselines, all on the same market and costs."""
    started = time.perf_counter()
    T, N = market.open.shape
    ppy = market.frequency.periods_per_year
    inputs = StrategyInputs.build(market, features, ppy)
    folds = make_folds(first_feature_row(market, features), T, config)
    oos_start, oos_stop = folds[0].test_start, folds[-1].test_stop
    weights = np.zeros((oos_stop + 1 - oos_start, N))
    fits = fit_folds(strategy, inputs, folds, config)
    seeds = {fold.index: fold_seed(config, fold) for fold in folds}
    for fit in fits:
        weights[fit.fold.test_start - oos_start:fit.fold.test_stop - oos_start] = fit.targets
    info_rows = [{"fold": fit.fold.index, "train_start": market.timestamps[fit.fold.train_start],
                  "train_stop": market.timestamps[fit.fold.train_stop - 1],
                  "test_start": market.timestamps[fit.fold.test_start],
                  "test_stop": market.timestamps[fit.fold.test_stop],
                  "seed": seeds[fit.fold.index], "fit_seconds": fit.fit_seconds, **fit.fitted.describe()}
                 for fit in fits]
    fitted = fits[-1].fitted
    window = slice_market(market, oos_start, oos_stop + 1)
    results: dict[str, BacktestResult] = {}
    result = backtest(window, params, weights, initial_cash=config.initial_cash, rng=config.seed,
                      name=strategy.name, ppy=ppy)
    results[strategy.name] = result.with_folds(_fold_table(result, folds, oos_start))
    for name in config.baselines:
        if name in results:
            log.warning("baseline %s has the strategy's name; reported once", name)
            continue
        baseline = baseline_strategy(name).fit(inputs, folds[0].train_start, folds[0].train_stop)
        w = np.zeros_like(weights)
        w[:-1] = baseline.targets(inputs, oos_start, oos_stop)
        res = backtest(window, params, w, initial_cash=config.initial_cash, rng=config.seed, name=name, ppy=ppy)
        results[name] = res.with_folds(_fold_table(res, folds, oos_start))
    elapsed = time.perf_counter() - started
    log.info("walk-forward done strategy=%s folds=%d oos_bars=%d seconds=%.2f", strategy.name, len(folds),
             oos_stop - oos_start, elapsed)
    return WalkForwardResult(strategy.name, results, folds, pd.DataFrame(info_rows), elapsed, last_fitted=fitted,
                             backend=config.backend)


@dataclass(frozen=True)
class FoldFit:
    """One fold's fit: the fitted strategy, the target weights of its test rows and the fit's wall time."""

    fold: Fold
    fitted: FittedStrategy
    targets: np.ndarray
    fit_seconds: float


def fold_seed(config: WalkForwardConfig, fold: Fold) -> int:
    """The seed a fold's fit runs under, the same on every backend."""
    return config.seed + fold.index


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Python's and numpy's global generators seeded for one fit, and restored after it: a fit that draws from
    them draws the same numbers in a worker as in the caller's process."""
    # The legacy global generator on purpose: it is what a third-party fit may draw from.
    py_state, np_state = random.getstate(), np.random.get_state()  # noqa: NPY002
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)  # noqa: NPY002


def fit_fold(strategy: Strategy, inputs: StrategyInputs, fold: Fold, seed: int) -> FoldFit:
    """Fit ``strategy`` on the fold's training rows and decide its test rows: the unit of work of every
    backend."""
    started = time.perf_counter()
    with _seeded(seed):
        fitted = strategy.fit(inputs, fold.train_start, fold.train_stop)
        targets = fitted.targets(inputs, fold.test_start, fold.test_stop)
    log.info("fold done fold=%d train=[%d,%d) test=[%d,%d)", fold.index, fold.train_start, fold.train_stop,
             fold.test_start, fold.test_stop)
    return FoldFit(fold, fitted, targets, time.perf_counter() - started)


def fit_folds(strategy: Strategy, inputs: StrategyInputs, folds: Sequence[Fold],
              config: WalkForwardConfig) -> list[FoldFit]:
    """Every fold's fit on the configured backend, in fold order."""
    if config.backend == "joblib":
        return _fit_joblib(strategy, inputs, folds, config)
    if config.backend == "ray":
        return _fit_ray(strategy, inputs, folds, config)
    progress = tqdm(folds, desc=f"walk-forward {strategy.name}", unit="fold", disable=not config.show_progress)
    return [fit_fold(strategy, inputs, fold, fold_seed(config, fold)) for fold in progress]


def _fit_joblib(strategy: Strategy, inputs: StrategyInputs, folds: Sequence[Fold],
                config: WalkForwardConfig) -> list[FoldFit]:
    from joblib import Parallel, delayed

    # Worker processes (loky): the fits are numpy/scikit-learn work that holds the GIL in places; the large
    # input arrays reach the workers memory-mapped, not copied per fold.
    parallel = Parallel(n_jobs=config.n_jobs, backend="loky", prefer="processes")
    fits = parallel(delayed(fit_fold)(strategy, inputs, fold, fold_seed(config, fold)) for fold in folds)
    return list(fits)


def _ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise MissingExtraError("ray", "walkforward.backend=ray", "pip install -e '.[ray]'") from exc
    return ray


def _fit_ray(strategy: Strategy, inputs: StrategyInputs, folds: Sequence[Fold],
             config: WalkForwardConfig) -> list[FoldFit]:
    ray = _ray()
    started_here = not ray.is_initialized()
    if started_here:
        # address None starts a local Ray on this machine (or joins RAY_ADDRESS when it is set).
        ray.init(address=config.ray_address, num_cpus=config.n_jobs if config.ray_address is None else None,
                 include_dashboard=False, log_to_driver=False)
    try:
        remote = ray.remote(num_cpus=1)(fit_fold)
        shared = ray.put(inputs)  # once in the object store, not once per fold
        refs = [remote.remote(strategy, shared, fold, fold_seed(config, fold)) for fold in folds]
        return list(ray.get(refs))
    finally:
        if started_here:
            ray.shutdown()


def metrics_table(results: Mapping[str, BacktestResult]) -> pd.DataFrame:
    """Strategy vs baselines, net vs gross: one row per result, the headline metrics as columns."""
    rows = {}
    for name, r in results.items():
        m, g = r.metrics, r.gross_metrics
        rows[name] = {"net_return": m["total_return"], "gross_return": g["total_return"],
                      "net_ann_return": m["annualized_return"], "net_sharpe": m["sharpe"], "gross_sharpe": g["sharpe"],
                      "max_drawdown": m["max_drawdown"], "turnover": m["turnover"], "costs": m["cost_total"],
                      "cost_bps": m["cost_bps"]}
    return pd.DataFrame.from_dict(rows, orient="index")


def evaluation_window(market: MarketArrays, features: FeatureSet | None,
                      config: WalkForwardConfig) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The out-of-sample span :func:`run_walkforward` will trade, from its first decision to its last fill,
    known before anything runs (to check a saved model's training span against it)."""
    folds = make_folds(first_feature_row(market, features), market.open.shape[0], config)
    return market.timestamps[folds[0].test_start], market.timestamps[folds[-1].test_stop]


def first_feature_row(market: MarketArrays, features: FeatureSet | None) -> int:
    """The first market row where some symbol has a complete (finite) feature row: where the folds start."""
    if features is None:
        return 0
    values = features.frame.loc[:, list(features.feature_names)].to_numpy(np.float64)
    stamps = features.frame.index.get_level_values("timestamp")[np.isfinite(values).all(axis=1)]
    if len(stamps) == 0:
        raise EvaluationError("walk-forward: no row has features")
    return int(market.timestamps.searchsorted(stamps.min()))
