"""stable-baselines3 metrics into MLflow through SB3's own ``Logger``, not by patching."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from stable_baselines3.common.logger import KVWriter

from ai_trading.tracking.runs import TrackedRun


class MlflowOutputFormat(KVWriter):
    """A ``KVWriter`` that logs SB3's numeric scalars (``rollout/``, ``train/``, ``time/`` ...) to a run."""

    def __init__(self, run: TrackedRun) -> None:
        self.run = run

    def write(self, key_values: dict[str, Any], key_excluded: dict[str, tuple[str, ...]], step: int = 0) -> None:
        metrics: dict[str, float] = {}
        for key, value in key_values.items():
            excluded = key_excluded.get(key) or ()
            if "mlflow" in excluded or isinstance(value, (str, bool)):
                continue
            if isinstance(value, (int, float, np.integer, np.floating)) and math.isfinite(float(value)):
                metrics[key] = float(value)
        if metrics:
            self.run.log_metrics(metrics, step=step)

    def close(self) -> None:
        """Nothing to release: the run is closed by :func:`ai_trading.tracking.start_run`."""
