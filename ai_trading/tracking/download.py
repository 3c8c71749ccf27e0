"""Downloading a model's files from MLflow for the verified loader: ``models:/<name>@<alias>``,
``models:/<name>/<version>`` and ``runs:/<run_id>/<path>``.

Imports nothing of :mod:`ai_trading.artifacts`, so the loader can use it without a cycle (the registry, which
signs and verifies, sits above both)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from ai_trading.errors import ConfigError
from ai_trading.tracking.runs import TrackingConfig


def registry_path(name: str, version: int) -> str:
    """Where a registered version's files sit inside its run's artifacts."""
    return f"registry/{name}/v{version}"


@dataclass(frozen=True)
class ResolvedModel:
    """A downloaded model directory, with the registered name and version a ``models:/`` URI asked for."""

    directory: Path
    model_name: str | None
    version: int | None


def _parse_models_uri(uri: str) -> tuple[str, str | None, int | None]:
    rest = uri[len("models:/"):]
    if "@" in rest:
        name, alias = rest.split("@", 1)
        if name and alias and "/" not in name:
            return name, alias, None
    else:
        name, _, version = rest.partition("/")
        if name and version.isdigit():
            return name, None, int(version)
    raise ConfigError(f"{uri!r}: expected models:/<name>@<alias> or models:/<name>/<version>")


def download_model(tracking: TrackingConfig, uri: str, dst: Path) -> ResolvedModel:
    """Download the files of ``models:/<name>@<alias>``, ``models:/<name>/<version>`` or
    ``runs:/<run_id>/<path>`` into ``dst``."""
    client = MlflowClient(tracking_uri=tracking.tracking_uri)
    try:
        if uri.startswith("runs:/"):
            local = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dst),
                                                       tracking_uri=tracking.tracking_uri)
            return ResolvedModel(Path(local), None, None)
        name, alias, number = _parse_models_uri(uri)
        mv = (client.get_model_version_by_alias(name, alias) if alias is not None
              else client.get_model_version(name, str(number)))
        version = int(mv.version)
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=f"runs:/{mv.run_id}/{registry_path(name, version)}", dst_path=str(dst),
            tracking_uri=tracking.tracking_uri)
    except MlflowException as exc:
        raise ConfigError(f"{uri}: cannot resolve the model in {tracking.tracking_uri}: {exc.message}") from None
    return ResolvedModel(Path(local), name, version)
