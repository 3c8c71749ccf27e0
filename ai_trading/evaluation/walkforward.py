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

Entry point: ``python -m ai_trading.evaluation.walkforward strategy=ml data.symbols=[SP500]``
(config ``conf/evaluate.yaml``). Only the entrypoint section at the end imports hydra, omegaconf, the
pipeline and tracking, lazily, so importing this module stays free of hydra and mlflow.
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ai_trading.errors import ConfigError, EvaluationError
from ai_trading.evaluation.backtest import BacktestResult, backtest, segment_metrics
from ai_trading.evaluation.strategies import (
    FittedMLStrategy,
    FittedStrategy,
    Strategy,
    StrategyInputs,
    baseline_strategy,
)
from ai_trading.execution import ExecParams, MarketArrays
from ai_trading.execution.market import slice_market
from ai_trading.features import FeatureSet

if TYPE_CHECKING:
    from omegaconf import DictConfig

log = logging.getLogger(__name__)

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

    def __post_init__(self) -> None:
        if self.n_folds < 1 or self.train_bars < 2:
            raise ConfigError(f"walkforward: n_folds={self.n_folds} must be >= 1, train_bars={self.train_bars} >= 2")
        if self.scheme not in ("rolling", "expanding"):
            raise ConfigError(f"walkforward.scheme={self.scheme!r}: expected rolling or expanding")
        if self.test_bars is not None and self.test_bars < 2:
            raise ConfigError(f"walkforward.test_bars={self.test_bars}: must be >= 2")
        if not (math.isfinite(self.initial_cash) and self.initial_cash > 0):
            raise ConfigError(f"walkforward.initial_cash={self.initial_cash}: must be > 0")


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
        raise EvaluationError(f"walk-forward: {stop - first_test} OOS rows after {config.train_bars} training rows "
                              f"(from row {first_row} of {n_rows}) are too few for {config.n_folds} folds")
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
    with_features = np.flatnonzero(inputs.has_features.any(axis=1)) if features is not None else np.arange(T)
    if len(with_features) == 0:
        raise EvaluationError("walk-forward: no row has features")
    folds = make_folds(int(with_features[0]), T, config)
    oos_start, oos_stop = folds[0].test_start, folds[-1].test_stop
    weights = np.zeros((oos_stop + 1 - oos_start, N))
    info_rows = []
    fitted: FittedStrategy | None = None
    progress = tqdm(folds, desc=f"walk-forward {strategy.name}", unit="fold", disable=not config.show_progress)
    for fold in progress:
        fit_start = time.perf_counter()
        fitted = strategy.fit(inputs, fold.train_start, fold.train_stop)
        weights[fold.test_start - oos_start:fold.test_stop - oos_start] = fitted.targets(inputs, fold.test_start,
                                                                                         fold.test_stop)
        info_rows.append({"fold": fold.index, "train_start": market.timestamps[fold.train_start],
                          "train_stop": market.timestamps[fold.train_stop - 1],
                          "test_start": market.timestamps[fold.test_start],
                          "test_stop": market.timestamps[fold.test_stop],
                          "fit_seconds": time.perf_counter() - fit_start,
                          **fitted.describe()})
        log.info("fold done fold=%d train=[%d,%d) test=[%d,%d)", fold.index, fold.train_start, fold.train_stop,
                 fold.test_start, fold.test_stop)
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
    return WalkForwardResult(strategy.name, results, folds, pd.DataFrame(info_rows), elapsed, last_fitted=fitted)


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


# --- entrypoint (the only part that touches hydra, omegaconf and tracking; imported lazily) ---------------


def evaluate(cfg: DictConfig, overrides: Sequence[str] = ()) -> dict[str, float]:
    """One evaluation job from the composed ``conf/evaluate.yaml``: data, features, walk-forward, report,
    SLO checks. Returns the logged metrics."""
    from hydra.utils import instantiate

    from ai_trading.evaluation.report import log_backtests
    from ai_trading.evaluation.slo import SLOConfig, check_backtests, log_events
    from ai_trading.evaluation.strategies import PretrainedStrategy, load_ml_strategy, make_strategy
    from ai_trading.jobs import start_job_run
    from ai_trading.pipeline import build_dataset, build_execution_for
    from ai_trading.seeding import seed_everything

    seed_everything(int(cfg.seed))
    dataset = build_dataset(cfg)
    market, params = build_execution_for(cfg, dataset.bars.frame, dataset.bars.frequency)
    if cfg.get("model_path"):
        # A saved model is checked against the features it meets here before anything runs.
        strategy: Strategy = PretrainedStrategy(load_ml_strategy(cfg.model_path, dataset.features.schema_hash))
    else:
        strategy = make_strategy(instantiate(cfg.strategy, _convert_="all"))
    wf_config: WalkForwardConfig = instantiate(cfg.walkforward, _convert_="all")
    slo_config: SLOConfig = instantiate(cfg.slo, _convert_="all")
    run_name = f"{cfg.experiment_name}__{strategy.name}__seed{cfg.seed}"
    with start_job_run(cfg, dataset, run_name=run_name, overrides=overrides, tags={"strategy": strategy.name}) as run:
        wf = run_walkforward(market, params, dataset.features, strategy, wf_config)
        metrics = log_backtests(run, wf.results, prefix="eval")
        run.log_text(wf.fold_info.to_csv(index=False), "eval/fold_models.csv")
        if isinstance(wf.last_fitted, FittedMLStrategy):
            with tempfile.TemporaryDirectory(prefix="ai_trading_model_") as scratch:
                path = Path(scratch) / "ml_strategy.joblib"
                wf.last_fitted.save(path)
                run.log_artifact(path, "model")
        events = check_backtests(wf.results, slo_config, elapsed_seconds=wf.elapsed_seconds)
        log_events(run, events)
        run.log_metrics({"eval/elapsed_seconds": wf.elapsed_seconds, "eval/slo_events": float(len(events))})
        table = metrics_table(wf.results)
        print(table.to_string(float_format=lambda v: f"{v:,.4f}"))
        log.info("evaluation logged run_id=%s name=%s events=%d", run.run_id, run_name, len(events))
    return metrics


def _cli() -> None:
    import hydra
    from hydra.core.hydra_config import HydraConfig

    from ai_trading.paths import CONF_DIR

    @hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="evaluate")
    def main(cfg: DictConfig) -> float:
        metrics = evaluate(cfg, list(HydraConfig.get().overrides.task))
        return metrics.get(f"eval/{cfg.strategy.name}/net/sharpe", math.nan)

    main()


if __name__ == "__main__":
    _cli()
