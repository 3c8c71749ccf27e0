"""The start and end of a seed sweep: a Hydra callback around one multirun.

``on_multirun_start`` prepares the MLflow store once, before (possibly parallel) jobs write to it.
``on_multirun_end`` is where promotion across seeds hooks in: today it reads the
sweep's runs back from MLflow and logs each seed's headline metric and their mean and spread.
"""

from __future__ import annotations

import logging
import statistics
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from ai_trading.tracking import TrackingConfig, prepare_store
from ai_trading.tracking.runs import sweep_runs

log = logging.getLogger(__name__)


def sweep_id_of(sweep_dir: str | Path) -> str:
    """The id that tags every run of one multirun: the sweep output folder's name."""
    path = Path(sweep_dir)
    return f"{path.parent.name}__{path.name}"


def _tracking(config: DictConfig) -> TrackingConfig:
    return TrackingConfig(str(config.tracking.tracking_uri), str(config.experiment_name))


class SweepSummary(Callback):
    """Logs the sweep's per-seed headline metric and its mean and spread across seeds."""

    def __init__(self, metric: str = "eval/rl/net/sharpe") -> None:
        self.metric = metric

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        prepare_store(_tracking(config))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        tracking = _tracking(config)
        sweep_id = sweep_id_of(config.hydra.sweep.dir)
        runs = sweep_runs(tracking, sweep_id)
        values = {name: metrics[self.metric] for name, metrics in runs.items() if self.metric in metrics}
        for name, value in sorted(values.items()):
            log.info("sweep %s run=%s %s=%.4f", sweep_id, name, self.metric, value)
        if len(values) >= 2:
            log.info("sweep %s seeds=%d %s mean=%.4f std=%.4f", sweep_id, len(values), self.metric,
                     statistics.mean(values.values()), statistics.stdev(values.values()))
        else:
            log.info("sweep %s finished runs=%d (metric %s on %d)", sweep_id, len(runs), self.metric, len(values))
