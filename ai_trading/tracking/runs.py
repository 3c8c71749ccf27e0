"""The only place that talks to MLflow: runs, params, tags, metrics and artifacts.

A run always carries its provenance: the resolved config (artifact and flattened params), the
Hydra overrides, the git commit and dirty flag (with the diff as an artifact when dirty), and the
data identity tags ``feature_schema_hash`` and ``dataset_fingerprint``.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
from mlflow.tracking import MlflowClient

from ai_trading.errors import ConfigError, Interrupted
from ai_trading.secrets import mask_text
from ai_trading.tracking.provenance import git_state

log = logging.getLogger(__name__)

_PARAM_BATCH = 100  # MLflow's limit of params per log_batch call
_PARAM_VALUE_MAX = 6000

PARENT_TAG = "mlflow.parentRunId"  # what the MLflow UI nests child runs under
NOTE_TAG = "mlflow.note.content"  # a run's description in the MLflow UI
SWEEP_ROLE_TAG = "sweep_role"  # "parent" on the one run per multirun that its seeds nest under
# MLflow 3 types experiments by this tag; "custom_model_development" is its model-training kind (the UI's
# "Machine learning" experiment type) rather than the GenAI default.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING_KIND = "custom_model_development"
# A saved run-list view (columns, chart filter) that ``?viewStateShareKey=headline`` opens in the UI.
HEADLINE_VIEW = "headline"
_SHARED_VIEW_TAG = "mlflow.sharedViewState."
HEADLINE_METRICS = ("summary/net_sharpe", "summary/excess_sharpe_vs_buy_and_hold", "summary/excess_sharpe_vs_trend",
                    "summary/net_return", "summary/max_drawdown", "summary/turnover")


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


def headline_view() -> str:
    """The run-list view that ``?viewStateShareKey=headline`` opens: the headline ``summary/`` metrics as the
    first columns, the chart view filtered to them (the UI's shared-view-state JSON; its chart filter is a
    regular expression)."""
    columns = [f"metrics.`{m}`" for m in HEADLINE_METRICS]
    run_name = "attributes.`Run Name`"
    return json.dumps({"selectedColumns": columns, "columnOrder": [run_name, *columns],
                       "columnWidths": {run_name: 420, **{c: 190 for c in columns}},
                       "chartsSearchFilter": f"^({'|'.join(HEADLINE_METRICS)})$", "hideEmptyCharts": True,
                       "orderByKey": "attributes.start_time", "orderByAsc": False})


def _experiment_tags() -> dict[str, str]:
    return {EXPERIMENT_KIND_TAG: MODEL_TRAINING_KIND, _SHARED_VIEW_TAG + HEADLINE_VIEW: headline_view()}


def _experiment_id(client: MlflowClient, name: str) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage != "active":
            raise ConfigError(f"MLflow experiment {name!r} is deleted; restore it or pick another experiment_name")
        for key, value in _experiment_tags().items():
            # An experiment made elsewhere gets the type and view once; a kind someone chose is kept.
            if key not in experiment.tags or (key.startswith(_SHARED_VIEW_TAG) and experiment.tags[key] != value):
                client.set_experiment_tag(experiment.experiment_id, key, value)
        return str(experiment.experiment_id)
    return str(client.create_experiment(name, tags=_experiment_tags()))


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
    parent_run_id: str | None = None,
    note: str | None = None,
) -> Iterator[TrackedRun]:
    """Open a run with full provenance; it ends FINISHED, or FAILED if the block raises. With
    ``parent_run_id`` it nests under that run in the UI; ``note`` is its description there."""
    client = MlflowClient(tracking_uri=config.tracking_uri)
    experiment_id = _experiment_id(client, config.experiment_name)
    git = git_state()
    base_tags = {
        "git_commit": git.commit,
        "git_dirty": str(git.dirty).lower(),
        "hydra_overrides": " ".join(overrides),
        "mlflow.runName": run_name,
    }
    if parent_run_id is not None:
        base_tags[PARENT_TAG] = parent_run_id
    if note is not None:
        base_tags[NOTE_TAG] = note
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


def open_sweep_parent(config: TrackingConfig, *, run_name: str, sweep_id: str, overrides: Sequence[str],
                      note: str) -> str:
    """Open the parent run of a multirun (left RUNNING until :func:`end_run`); its seeds find it by
    ``sweep_id`` (:func:`sweep_parent`) and nest under it."""
    client = MlflowClient(tracking_uri=config.tracking_uri)
    git = git_state()
    tags = {"sweep_id": sweep_id, SWEEP_ROLE_TAG: "parent", "git_commit": git.commit,
            "git_dirty": str(git.dirty).lower(), "hydra_overrides": " ".join(overrides), NOTE_TAG: note,
            "mlflow.runName": run_name}
    run = client.create_run(_experiment_id(client, config.experiment_name), run_name=run_name, tags=tags)
    log.info("mlflow sweep parent run started run_id=%s name=%s sweep_id=%s", run.info.run_id, run_name, sweep_id)
    return str(run.info.run_id)


def sweep_parent(config: TrackingConfig, sweep_id: str) -> str | None:
    """The id of the parent run of sweep ``sweep_id``, or None (a single job, or a sweep without one)."""
    client = MlflowClient(tracking_uri=config.tracking_uri)
    experiment = client.get_experiment_by_name(config.experiment_name)
    if experiment is None:
        return None
    runs = client.search_runs([experiment.experiment_id], filter_string=(
        f"tags.sweep_id = '{sweep_id}' and tags.{SWEEP_ROLE_TAG} = 'parent'"), max_results=2)
    if len(runs) > 1:
        raise ConfigError(f"sweep_id {sweep_id!r} has {len(runs)} parent runs in experiment {config.experiment_name!r}")
    return str(runs[0].info.run_id) if runs else None


@dataclass(frozen=True)
class RunRecord:
    """A run as read back from the store."""

    run_id: str
    name: str
    status: str
    tags: Mapping[str, str]
    metrics: Mapping[str, float]


def _record(run: Any) -> RunRecord:
    return RunRecord(str(run.info.run_id), str(run.info.run_name), str(run.info.status), dict(run.data.tags),
                     dict(run.data.metrics))


def run_record(config: TrackingConfig, run_id: str) -> RunRecord:
    """One run as read back from the store."""
    return _record(MlflowClient(tracking_uri=config.tracking_uri).get_run(run_id))


def child_runs(config: TrackingConfig, parent_run_id: str) -> list[RunRecord]:
    """Every run nested under ``parent_run_id``, whatever its status (FAILED and KILLED carry their error)."""
    client = MlflowClient(tracking_uri=config.tracking_uri)
    parent = client.get_run(parent_run_id)
    runs = client.search_runs([parent.info.experiment_id],
                              filter_string=f"tags.`{PARENT_TAG}` = '{parent_run_id}'", max_results=10000)
    return [_record(r) for r in runs]


def record_failed_run(config: TrackingConfig, *, run_name: str, parent_run_id: str, sweep_id: str,
                      overrides: Sequence[str], seed: str, error_type: str, message: str) -> str:
    """A FAILED run nested under a sweep's parent for a job that failed before it opened its own run, with
    the same error tags and ``error.txt`` a failed run records itself."""
    client = MlflowClient(tracking_uri=config.tracking_uri)
    text = message[:_PARAM_VALUE_MAX]
    tags = {"sweep_id": sweep_id, "seed": seed, "hydra_overrides": " ".join(overrides), PARENT_TAG: parent_run_id,
            "mlflow.runName": run_name, "error_type": error_type, "error_message": text[:500]}
    run = client.create_run(_experiment_id(client, config.experiment_name), run_name=run_name, tags=tags)
    try:
        client.log_text(run.info.run_id, f"{error_type}: {text}\n", "error.txt")
    finally:
        client.set_terminated(run.info.run_id, status="FAILED")
    return str(run.info.run_id)


def open_run(config: TrackingConfig, run_id: str) -> TrackedRun:
    """An existing run to write to (the sweep's parent at the sweep's end)."""
    return TrackedRun(MlflowClient(tracking_uri=config.tracking_uri), run_id)


def read_artifact_text(config: TrackingConfig, run_id: str, path: str) -> str:
    """The text of one artifact of a run (e.g. a seed's ``eval/equity.csv``), from any artifact store (a local
    folder, or a tracking server's ``mlflow-artifacts:`` root over HTTP). The one file is fetched by the
    store's own single-file download, not ``download_artifacts``, whose thread pool is closed once the
    interpreter exits (when a failed sweep's summary runs)."""
    uri = MlflowClient(tracking_uri=config.tracking_uri).get_run(run_id).info.artifact_uri
    repository = get_artifact_repository(uri, tracking_uri=config.tracking_uri)
    with tempfile.TemporaryDirectory(prefix="ai_trading_artifact_") as scratch:
        local = Path(scratch) / Path(path).name
        repository._download_file(path, str(local))  # every artifact repository implements this one-file fetch
        return local.read_text()


def end_run(config: TrackingConfig, run_id: str, status: str) -> None:
    """Close a run opened by :func:`open_sweep_parent` as FINISHED, FAILED or KILLED."""
    MlflowClient(tracking_uri=config.tracking_uri).set_terminated(run_id, status=status)
