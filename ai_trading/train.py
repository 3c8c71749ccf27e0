"""The main job: ``python -m ai_trading.train`` (one run) or ``-m seed=0,1,2,3,4`` (a seed sweep).

Each job seeds everything, loads and validates the configured bars, builds the unified features
and records the run in MLflow with its provenance (``feature_schema_hash``, ``dataset_fingerprint``,
git commit, resolved config and overrides). ``--cfg job`` prints the composed config.
"""

from __future__ import annotations

import logging

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from ai_trading.pipeline import build_dataset
from ai_trading.seeding import seed_everything
from ai_trading.tracking import TrackingConfig, start_run

log = logging.getLogger(__name__)


def run(cfg: DictConfig, overrides: list[str]) -> dict[str, float]:
    """One job of the main entrypoint; returns the metrics it logged."""
    seed_everything(int(cfg.seed))
    dataset = build_dataset(cfg)
    tracking: TrackingConfig = instantiate(cfg.tracking)
    resolved = {str(k): v for k, v in OmegaConf.to_container(cfg, resolve=True).items()}  # type: ignore[union-attr]
    run_name = f"{cfg.experiment_name}__{cfg.algo.name}__seed{cfg.seed}"
    tags = {
        "feature_schema_hash": dataset.features.schema_hash,
        "dataset_fingerprint": dataset.bars.fingerprint,
        "seed": cfg.seed,
    }
    metrics = {
        "data/bars": float(len(dataset.bars.frame)),
        "data/feature_rows": float(len(dataset.features.frame)),
        "data/features": float(len(dataset.features.feature_names)),
    }
    with start_run(tracking, run_name=run_name, resolved_config=resolved, overrides=overrides, tags=tags) as tracked:
        tracked.log_metrics(metrics)
        tracked.log_dict(dataset.features.spec.canonical(), "features/spec.json")
        log.info("run logged run_id=%s name=%s", tracked.run_id, run_name)
    return metrics


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float:
    metrics = run(cfg, list(HydraConfig.get().overrides.task))
    return metrics["data/feature_rows"]


if __name__ == "__main__":
    main()
