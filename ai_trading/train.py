"""The main job: ``python -m ai_trading.train`` (one run) or ``-m seed=0,1,2,3,4`` (a seed sweep).

Each job seeds everything in one place; loads and validates the configured bars; builds the unified
features and the portfolio environment on the simulator; trains the configured stable-baselines3
algorithm; evaluates the agent out of sample next to the baselines with cost-adjusted metrics; and
records everything in MLflow: resolved config, overrides, git commit, seed, sweep id,
``feature_schema_hash``, ``dataset_fingerprint``, namespaced metrics, plots and the model.
``--cfg job`` prints the composed config. The sweep's end (a Hydra callback) is where promotion
across seeds hooks in.
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
from hydra.utils import instantiate
from omegaconf import DictConfig

from ai_trading.evaluation.report import log_backtests
from ai_trading.evaluation.slo import SLOConfig, check_backtests, log_events
from ai_trading.jobs import start_job_run
from ai_trading.pipeline import build_dataset
from ai_trading.rl_trading.env import build_env_data
from ai_trading.rl_trading.evaluate import evaluate_agent
from ai_trading.rl_trading.train import train_agent
from ai_trading.seeding import seed_everything
from ai_trading.sweep import sweep_id_of

log = logging.getLogger(__name__)

HEADLINE = "eval/rl/net/sharpe"


def run(cfg: DictConfig, overrides: list[str], sweep_id: str) -> dict[str, float]:
    """One job of the main entrypoint; returns the metrics it logged."""
    started = time.perf_counter()
    torch.set_num_threads(int(cfg.torch_threads))
    seed = int(cfg.seed)
    seed_everything(seed)
    dataset = build_dataset(cfg)
    data = build_env_data(cfg, dataset)
    slo_config: SLOConfig = instantiate(cfg.slo, _convert_="all")
    run_name = f"{cfg.experiment_name}__{cfg.algo.name}__seed{seed}"
    tags = {"sweep_id": sweep_id, "algo": cfg.algo.name, "experiment": cfg.experiment_name}
    with start_job_run(cfg, dataset, run_name=run_name, overrides=overrides, tags=tags) as tracked:
        agent = train_agent(cfg, dataset, seed=seed, run=tracked)
        evaluation = evaluate_agent(cfg, data, agent, seed=seed)
        results = evaluation.results
        metrics = {**log_backtests(tracked, results, prefix="eval"), **evaluation.metrics()}
        tracked.log_metrics(evaluation.metrics())
        events = check_backtests(results, slo_config, elapsed_seconds=time.perf_counter() - started)
        log_events(tracked, events)
        with tempfile.TemporaryDirectory(prefix="ai_trading_model_") as scratch:
            model_dir = Path(scratch) / "model"
            agent.save(model_dir)
            tracked.log_artifact(model_dir, "model")
        elapsed = time.perf_counter() - started
        tracked.log_metrics({"train/timesteps": float(agent.timesteps), "time/job_seconds": elapsed})
        log.info("run done name=%s %s=%.4f net_return=%.4f seconds=%.1f", run_name, HEADLINE,
                 metrics.get(HEADLINE, float("nan")), results["rl"].metrics["total_return"], elapsed)
    return metrics


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float:
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode == RunMode.MULTIRUN:
        sweep_id = sweep_id_of(hydra_cfg.sweep.dir)
    else:
        sweep_id = f"single__{Path(hydra_cfg.run.dir).name}"
    metrics = run(cfg, list(hydra_cfg.overrides.task), sweep_id)
    return metrics.get(HEADLINE, float("nan"))


if __name__ == "__main__":
    main()
