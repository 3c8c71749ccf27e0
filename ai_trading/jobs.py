"""The MLflow run of an entrypoint job (``ai_trading.train``, the walk-forward evaluation).

Kept apart from :mod:`ai_trading.pipeline` so that building data and environments never imports mlflow.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from ai_trading.pipeline import Dataset
from ai_trading.tracking import TrackedRun, TrackingConfig, start_run


@contextmanager
def start_job_run(cfg: DictConfig, dataset: Dataset, *, run_name: str, overrides: Sequence[str],
                  tags: Mapping[str, Any] | None = None) -> Iterator[TrackedRun]:
    """The MLflow run of one entrypoint job: ``cfg.tracking``'s store, the resolved config, and the
    provenance every job carries (``feature_schema_hash``, ``dataset_fingerprint``, seed, the bar frequency)
    plus ``tags``; the data-quality report goes to ``data/quality.json`` with a metric per symbol."""
    tracking: TrackingConfig = instantiate(cfg.tracking)
    resolved = {str(k): v for k, v in OmegaConf.to_container(cfg, resolve=True).items()}  # type: ignore[union-attr]
    provenance = {"feature_schema_hash": dataset.features.schema_hash,
                  "dataset_fingerprint": dataset.bars.fingerprint, "seed": cfg.seed,
                  "data_frequency": dataset.bars.frequency.label,
                  "data_periods_per_year": dataset.bars.frequency.periods_per_year}
    with start_run(tracking, run_name=run_name, resolved_config=resolved, overrides=overrides,
                   tags={**provenance, **(tags or {})}) as run:
        quality = dataset.bars.quality
        run.log_dict(quality.to_dict(), "data/quality.json")
        run.log_metrics({f"data/{q.symbol}/open_equals_prev_close": q.open_equals_prev_close
                         for q in quality.symbols if math.isfinite(q.open_equals_prev_close)})
        yield run
