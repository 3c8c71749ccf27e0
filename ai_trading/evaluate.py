"""The walk-forward job: ``python -m ai_trading.evaluate strategy=ml data.symbols=[SP500]``.

Fits the chosen strategy per fold on its training window (or evaluates a saved model as is with
``model_path=``), trades the stitched out-of-sample span through the simulator with the preset's costs next to
the baselines, prints the strategy-vs-baselines table and logs everything to MLflow with the run's provenance
(``feature_schema_hash``, ``dataset_fingerprint``, ``cost_model_hash``). A saved model is checked against
this run's features and its out-of-sample span before any run opens: an overlap with the model's training
span fails unless ``allow_in_sample=true``, which labels every metric and artifact ``in_sample/`` instead of
``eval/`` and tags the run ``in_sample=true``. ``--help`` lists the groups.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from ai_trading.artifacts.keys import load_signer
from ai_trading.artifacts.loader import Expectations, load_model
from ai_trading.cli import run_reported
from ai_trading.errors import EvaluationError
from ai_trading.evaluation.report import log_backtests
from ai_trading.evaluation.slo import check_backtests, enforce, log_events
from ai_trading.evaluation.strategies import (
    ML_STRATEGY_FILE,
    FittedMLStrategy,
    MLStrategyConfig,
    PretrainedStrategy,
    Strategy,
    check_evaluation_window,
    make_strategy,
)
from ai_trading.evaluation.walkforward import evaluation_window, metrics_table, run_walkforward
from ai_trading.interrupts import StopFlag, graceful_interrupts
from ai_trading.jobs import log_fold_runs, log_signed_model, start_job_run
from ai_trading.pipeline import build_costs, build_dataset
from ai_trading.seeding import seed_everything
from ai_trading.wiring import EvaluateConfig, evaluate_config

log = logging.getLogger(__name__)


def evaluate(config: EvaluateConfig, overrides: Sequence[str] = (), stop: StopFlag | None = None
             ) -> tuple[dict[str, float], str]:
    """One walk-forward job: data, features, costs, walk-forward, report, SLO checks. Returns the logged
    metrics and the key of the strategy's headline metric (its net Sharpe). With ``stop`` a stop signal ends
    the job after the walk-forward, before anything more is logged, and the run is closed as KILLED."""
    stop = StopFlag() if stop is None else stop
    research = config.research
    seed_everything(research.seed)
    dataset = build_dataset(research.data, research.features)
    execution = build_costs(dataset, research.simulator, research.cost_model)
    in_sample = False
    window = evaluation_window(execution.market, dataset.features, config.walkforward)  # fails before any run
    # Only a walk-forward that fits a model signs it; a key that may not sign fails before anything runs.
    fits = config.model_path is None and isinstance(config.strategy, MLStrategyConfig)
    signer = load_signer(research.signing) if fits else None
    if config.model_path is not None:
        # A saved model is verified (signature, files) and checked against the features, costs and dates it
        # meets here before anything runs.
        loaded = load_model(config.model_path, research.signing,
                            Expectations(dataset.features.schema_hash, execution.cost_model_hash,
                                         dataset.bars.fingerprint, kind="ml"), tracking=research.tracking)
        pretrained = loaded.model
        if not isinstance(pretrained, FittedMLStrategy):
            raise EvaluationError(f"model_path={config.model_path}: holds a {type(pretrained).__name__}, not a "
                                  "fitted ML strategy")
        in_sample = check_evaluation_window(pretrained, *window, allow_in_sample=config.allow_in_sample)
        strategy: Strategy = PretrainedStrategy(pretrained)
    else:
        strategy = make_strategy(config.strategy)
    prefix = "in_sample" if in_sample else "eval"
    run_name = f"{research.experiment_name}__{strategy.name}__seed{research.seed}"
    tags = {"strategy": strategy.name, "in_sample": str(in_sample).lower()}
    with start_job_run(research, dataset, execution, run_name=run_name, overrides=overrides, tags=tags) as run:
        wf = run_walkforward(execution.market, execution.params, dataset.features, strategy, config.walkforward)
        stop.check("the walk-forward")
        metrics = log_backtests(run, wf.results, prefix=prefix)
        run.log_text(wf.fold_info.to_csv(index=False), f"{prefix}/fold_models.csv")
        log_fold_runs(run, research, wf, run_name=run_name, prefix=prefix, tags=tags)
        if isinstance(wf.last_fitted, FittedMLStrategy) and signer is not None:
            fitted = wf.last_fitted

            def write(files: Path) -> None:
                files.mkdir(parents=True)
                fitted.save(files / ML_STRATEGY_FILE)

            log_signed_model(run, research, dataset, execution, kind="ml", write_files=write,
                             policy={"feature_names": list(fitted.feature_names)},
                             metrics={k: v for k, v in metrics.items() if k.endswith("/net/sharpe")},
                             signer=signer, sweep_id=f"evaluate__{run.run_id}")
        events = check_backtests(wf.results, research.slo, elapsed_seconds=wf.elapsed_seconds)
        log_events(run, events, f"{prefix}/slo_events.json")
        run.log_metrics({f"{prefix}/elapsed_seconds": wf.elapsed_seconds, f"{prefix}/slo_events": float(len(events))})
        table = metrics_table(wf.results)
        print(table.to_string(float_format=lambda v: f"{v:,.4f}"))
        log.info("evaluation logged run_id=%s name=%s events=%d", run.run_id, run_name, len(events))
        enforce(events, research.slo)
    return metrics, f"{prefix}/{strategy.name}/net/sharpe"


@hydra.main(version_base="1.3", config_path="../conf", config_name="evaluate")
def main(cfg: DictConfig) -> float:
    def job() -> float:
        config = evaluate_config(cfg)
        with graceful_interrupts() as stop:
            metrics, headline = evaluate(config, list(HydraConfig.get().overrides.task), stop)
        return metrics.get(headline, math.nan)

    return run_reported(job)


if __name__ == "__main__":
    main()
