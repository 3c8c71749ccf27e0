"""The main job: ``python -m ai_trading.train`` (one run) or ``-m seed=0,1,2,3,4`` (a seed sweep).

Each job turns the composed config into typed configs once (:mod:`ai_trading.wiring`); seeds everything in
one place; loads and validates the configured bars; builds the unified features, the cost truth (simulator
preset plus the cost model's learned state) and the env data once; trains the configured stable-baselines3
algorithm; evaluates the agent out of sample next to the baselines with cost-adjusted metrics; and records
everything in MLflow: resolved config (secrets masked), overrides, git commit, seed, sweep id,
``feature_schema_hash``, ``dataset_fingerprint``, ``cost_model_hash``, namespaced metrics, plots and the
model as an MLflow pyfunc with its signed manifest (``model/``). ``model_path=`` evaluates a saved model
instead of training one, after the verified loader accepted it. ``--cfg job`` prints the composed config.
The sweep's end (a Hydra callback, :mod:`ai_trading.sweep`) decides promotion across seeds and registers
a passing sweep's best model.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from ai_trading.artifacts.keys import load_signer
from ai_trading.artifacts.loader import Expectations, load_model
from ai_trading.cli import run_reported
from ai_trading.evaluation.report import log_backtests
from ai_trading.evaluation.slo import check_backtests, enforce, log_events
from ai_trading.interrupts import StopFlag, graceful_interrupts
from ai_trading.jobs import log_signed_model, start_job_run
from ai_trading.pipeline import build_costs, build_dataset
from ai_trading.rl_trading import EnvData
from ai_trading.rl_trading.evaluate import evaluate_agent
from ai_trading.rl_trading.train import TrainedAgent, train_agent
from ai_trading.seeding import seed_everything
from ai_trading.sweep import sweep_id_of
from ai_trading.tracking import TrackedRun
from ai_trading.tracking.naming import run_name as job_run_name
from ai_trading.tracking.naming import run_note
from ai_trading.tracking.runs import sweep_parent
from ai_trading.tracking.sb3 import MlflowOutputFormat
from ai_trading.tracking.summary import headline_metrics
from ai_trading.wiring import TrainConfig, train_config

log = logging.getLogger(__name__)

HEADLINE = "eval/rl/net/sharpe"


def run(config: TrainConfig, overrides: list[str], sweep_id: str, stop: StopFlag | None = None) -> dict[str, float]:
    """One job of the main entrypoint; returns the metrics it logged. With ``stop`` a stop signal ends the job
    at its next step boundary: during training the partly trained model is logged as ``checkpoint/`` (model
    and normaliser, loadable with SB3 to continue by hand) and the run is closed as KILLED with the reason."""
    started = time.perf_counter()
    stop = StopFlag() if stop is None else stop
    research = config.research
    torch.set_num_threads(config.torch_threads)
    seed_everything(research.seed)
    dataset = build_dataset(research.data, research.features)
    execution = build_costs(dataset, research.simulator, research.cost_model)
    data = EnvData.build(execution.market, execution.params, dataset.features, config.env.eval_fraction)
    stop.check("data loading")
    # Both fail before any run opens: a signing key that may not sign (only a job that trains signs), and a
    # saved model that does not verify or was built on other features or costs than this job's.
    signer = load_signer(research.signing) if config.model_path is None else None
    saved = None if config.model_path is None else load_model(
        config.model_path, research.signing, Expectations(dataset.features.schema_hash, execution.cost_model_hash,
                                                          dataset.bars.fingerprint, kind="rl"),
        tracking=research.tracking)
    run_name = job_run_name(research.experiment_name, config.algo.name, f"seed{research.seed}", overrides)
    tags = {"sweep_id": sweep_id, "algo": config.algo.name, "experiment": research.experiment_name}
    if config.model_path is not None:
        tags["model_source"] = config.model_path
    with start_job_run(research, dataset, execution, run_name=run_name, overrides=overrides, tags=tags,
                       parent_run_id=sweep_parent(research.tracking, sweep_id),
                       note=run_note(overrides, sweep_id=sweep_id)) as tracked:
        if saved is not None:
            agent: TrainedAgent = saved.model
        else:
            agent = train_agent(config.algo, config.env, data, seed=research.seed,
                                log_formats=[MlflowOutputFormat(tracked)], stop=lambda: bool(stop))
        if stop and saved is None:
            _log_model(tracked, agent, "checkpoint")
            tracked.log_metrics({"train/timesteps": float(agent.timesteps)})
            stop.check(f"training (after {agent.timesteps} timesteps; checkpoint/ saved)")
        evaluation = evaluate_agent(data, config.env, config.trend, agent, seed=research.seed)
        results = evaluation.results
        metrics = {**log_backtests(tracked, results, prefix="eval"), **evaluation.metrics()}
        tracked.log_metrics(evaluation.metrics())
        tracked.log_metrics(headline_metrics(metrics))
        events = check_backtests(results, research.slo, elapsed_seconds=time.perf_counter() - started)
        log_events(tracked, events)
        if signer is not None:  # a model trained here (not one loaded through model_path=)
            policy = {"algo": config.algo.name, "symbols": list(data.market.symbols),
                      "feature_names": list(dataset.features.feature_names), "long_only": config.env.long_only,
                      "max_position": config.env.max_position, "max_leverage": config.env.max_leverage}
            log_signed_model(tracked, research, dataset, execution, kind="rl", write_files=agent.save,
                             policy=policy, metrics=headline_metrics(metrics), signer=signer, sweep_id=sweep_id)
        elapsed = time.perf_counter() - started
        tracked.log_metrics({"train/timesteps": float(agent.timesteps), "time/job_seconds": elapsed})
        enforce(events, research.slo)
        stop.check("the evaluation")  # a stop that arrived after training still ends the run as KILLED
        log.info("run done name=%s %s=%.4f net_return=%.4f seconds=%.1f", run_name, HEADLINE,
                 metrics.get(HEADLINE, float("nan")), results["rl"].metrics["total_return"], elapsed)
    return metrics


def _log_model(tracked: TrackedRun, agent: TrainedAgent, folder: str) -> None:
    """The interrupted model as plain files, unsigned on purpose: ``checkpoint/`` is for continuing training
    by hand with SB3, and the verified loader refuses it (no manifest), so it can never be traded."""
    with tempfile.TemporaryDirectory(prefix="ai_trading_model_") as scratch:
        model_dir = Path(scratch) / folder
        agent.save(model_dir)
        tracked.log_artifact(model_dir, folder)


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float:
    hydra_cfg = HydraConfig.get()

    def job() -> float:
        config = train_config(cfg)
        if hydra_cfg.mode == RunMode.MULTIRUN:
            sweep_id = sweep_id_of(hydra_cfg.sweep.dir)
        else:
            sweep_id = f"single__{Path(hydra_cfg.run.dir).name}"
        with graceful_interrupts() as stop:
            metrics = run(config, list(hydra_cfg.overrides.task), sweep_id, stop)
        return metrics.get(HEADLINE, float("nan"))

    return run_reported(job, multirun=hydra_cfg.mode == RunMode.MULTIRUN)


if __name__ == "__main__":
    main()
