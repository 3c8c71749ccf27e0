"""The only place that talks to MLflow: runs, params, tags, metrics and artifacts.

A run always carries its provenance: the resolved config (artifact and flattened params), the
Hydra overrides, the git commit and dirty flag (with the diff as an artifact when dirty), and the
data identity tags ``feature_schema_hash`` and ``dataset_fingerprint``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
from mlflow.tracking import MlflowClient

from ai_trading.errors import ConfigError, Interrupted
from ai_trading.secrets import mask_text
from ai_trading.tracking.provenance import git_state

log = logging.getLogger(__name__)

_PARAM_BATCH = 100  # MLflow's limit of params per log_batch call
_PARAM_VALUE_MAX = 6000


@dataclass(frozen=True)
class TrackingConfig:
    """Where runs go: an MLflow tracking URI (``sqlite:///mlflow.db`` by default) and experiment."""

    tracking_uri: str
    experiment_name: str


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Flatten nested config into dotted keys with string values (lists as JSON)."""
    flat: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
            flat[name] = text[:_PARAM_VALUE_MAX]
    return flat


class TrackedRun:
    """An open MLflow run; every write goes through these methods."""

    def __init__(self, client: MlflowClient, run_id: str) -> None:
        self.client = client
        self.run_id = run_id

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        for key, value in tags.items():
            self.client.set_tag(self.run_id, key, str(value))

    def log_params(self, params: Mapping[str, str]) -> None:
        items = [mlflow.entities.Param(k, v) for k, v in params.items()]
        for start in range(0, len(items), _PARAM_BATCH):
            self.client.log_batch(self.run_id, params=items[start : start + _PARAM_BATCH])

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        entities = [
            mlflow.entities.Metric(k, float(v), mlflow.utils.time.get_current_time_millis(), step or 0)
            for k, v in metrics.items()
        ]
        for start in range(0, len(entities), 1000):
            self.client.log_batch(self.run_id, metrics=entities[start : start + 1000])

    def log_text(self, text: str, artifact_file: str) -> None:
        self.client.log_text(self.run_id, text, artifact_file)

    def log_dict(self, payload: dict[str, Any], artifact_file: str) -> None:
        self.client.log_dict(self.run_id, payload, artifact_file)

    def log_artifact(self, path: Path, folder: str | None = None) -> None:
        if path.is_dir():
            self.client.log_artifacts(self.run_id, str(path), folder)
        else:
            self.client.log_artifact(self.run_id, str(path), folder)

    def log_figure(self, figure: Any, artifact_file: str) -> None:
        """Log a matplotlib figure as a PNG artifact (e.g. ``plots/equity.png``)."""
        self.client.log_figure(self.run_id, figure, artifact_file)

    def artifact_uri(self) -> str:
        return str(self.client.get_run(self.run_id).info.artifact_uri)


def _experiment_id(client: MlflowClient, name: str) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage != "active":
            raise ConfigError(f"MLflow experiment {name!r} is deleted; restore it or pick another experiment_name")
        return str(experiment.experiment_id)
    return str(client.create_experiment(name))


def prepare_store(config: TrackingConfig) -> str:
    """Create the store's tables and the experiment once, before parallel jobs open runs in it
    (several processes initialising one SQLite store at once race on table creation)."""
    return _experiment_id(MlflowClient(tracking_uri=config.tracking_uri), config.experiment_name)


@contextmanager
def start_run(
    config: TrackingConfig,
    *,
    run_name: str,
    resolved_config: Mapping[str, Any],
    overrides: Sequence[str] = (),
    tags: Mapping[str, Any] | None = None,
) -> Iterator[TrackedRun]:
    """Open a run with full provenance; it ends FINISHED, or FAILED if the block raises."""
    client = MlflowClient(tracking_uri=config.tracking_uri)
    experiment_id = _experiment_id(client, config.experiment_name)
    git = git_state()
    base_tags = {
        "git_commit": git.commit,
        "git_dirty": str(git.dirty).lower(),
        "hydra_overrides": " ".join(overrides),
        "mlflow.runName": run_name,
    }
    run = client.create_run(experiment_id, run_name=run_name, tags={**base_tags, **{k: str(v) for k, v in
                                                                                     (tags or {}).items()}})
    tracked = TrackedRun(client, run.info.run_id)
    log.info("mlflow run started run_id=%s name=%s experiment=%s uri=%s", run.info.run_id, run_name,
             config.experiment_name, mask_text(config.tracking_uri))
    try:
        tracked.log_params(flatten(resolved_config))
        tracked.log_dict(dict(resolved_config), "config/resolved.yaml")
        tracked.log_text("\n".join(overrides) + "\n", "config/overrides.txt")
        if git.dirty and git.diff:
            tracked.log_text(mask_text(git.diff), "provenance/git_diff.patch")
        yield tracked
    except Interrupted as exc:
        client.set_tag(run.info.run_id, "stop_reason", str(exc))
        client.set_terminated(run.info.run_id, status="KILLED")
        log.warning("mlflow run killed run_id=%s reason=%s", run.info.run_id, exc)
        raise
    except BaseException as exc:
        # The FAILED run says why in the UI: the error's type and message as tags and a short artifact.
        message = mask_text(str(exc))[:_PARAM_VALUE_MAX]
        try:
            client.set_tag(run.info.run_id, "error_type", type(exc).__name__)
            client.set_tag(run.info.run_id, "error_message", message[:500])
            tracked.log_text(f"{type(exc).__name__}: {message}\n", "error.txt")
        finally:
            client.set_terminated(run.info.run_id, status="FAILED")
        log.error("mlflow run failed run_id=%s error=%s", run.info.run_id, type(exc).__name__)
        raise
    client.set_terminated(run.info.run_id, status="FINISHED")


def sweep_runs(config: TrackingConfig, sweep_id: str) -> dict[str, dict[str, float]]:
    """Finished runs tagged with ``sweep_id``: run name -> latest metrics."""
    client = MlflowClient(tracking_uri=config.tracking_uri)
    experiment = client.get_experiment_by_name(config.experiment_name)
    if experiment is None:
        return {}
    runs = client.search_runs([experiment.experiment_id], filter_string=f"tags.sweep_id = '{sweep_id}'")
    return {run.info.run_name: dict(run.data.metrics) for run in runs if run.info.status == "FINISHED"}
