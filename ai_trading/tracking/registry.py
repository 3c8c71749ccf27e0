"""Models in MLflow: the pyfunc directory a run logs and the Model Registry (register a champion, move the
``champion`` / ``previous`` aliases); downloading a model for the verified loader is
:mod:`ai_trading.tracking.download`.

A registered version's files live in its run under ``registry/<name>/v<version>/``: the run's pyfunc directory
with a manifest re-signed for that version (``model_name``, ``version``, governance decision), so
``models:/<name>@champion`` resolves to files whose manifest names exactly that name and version.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from ai_trading.artifacts.build import write_signed
from ai_trading.artifacts.config import SigningConfig
from ai_trading.artifacts.loader import Expectations, private_copy, verify_directory
from ai_trading.artifacts.manifest import MANIFEST_FILE, manifest_digest, utc_now
from ai_trading.artifacts.signing import Signer
from ai_trading.errors import ConfigError, DevKeyRefused, MalformedManifest
from ai_trading.tracking.download import registry_path
from ai_trading.tracking.runs import TrackingConfig

log = logging.getLogger(__name__)

PYFUNC_LOADER = "ai_trading.artifacts.pyfunc"
MODEL_FOLDER = "model"
CHAMPION, PREVIOUS = "champion", "previous"
# Written into the pyfunc's requirements as is: the package itself is installed from its checkout.
_REQUIREMENTS = [f"mlflow=={mlflow.__version__}", "stable-baselines3", "scikit-learn", "joblib", "pynacl", "pandas"]


def save_pyfunc(path: Path, data_dir: Path) -> str:
    """Save an MLflow pyfunc model at ``path`` whose loader is :mod:`ai_trading.artifacts.pyfunc` (a module of
    the installed package: no pickled wrapper, no code in the artifact) with ``data_dir`` as its data;
    returns the data's path relative to ``path``. Requirements are given, not inferred (inference would
    load the model in a subprocess)."""
    mlflow.pyfunc.save_model(path=str(path), loader_module=PYFUNC_LOADER, data_path=str(data_dir),
                             pip_requirements=_REQUIREMENTS)
    data = Path("data") / data_dir.name
    if not (path / data).is_dir():
        raise MalformedManifest(f"MLflow did not write the model data to {data}", where=str(path))
    return data.as_posix()


@dataclass(frozen=True)
class RegisteredModel:
    name: str
    version: int
    manifest_sha256: str
    previous: int | None


def _next_version(client: MlflowClient, name: str) -> int:
    try:
        client.create_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    versions = [int(v.version) for v in client.search_model_versions(f"name='{name}'")]
    return max(versions, default=0) + 1


def _alias_version(client: MlflowClient, name: str, alias: str) -> int | None:
    try:
        return int(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def register_champion(tracking: TrackingConfig, run_id: str, *, model_name: str, decision: Mapping[str, Any],
                      signer: Signer, config: SigningConfig, expected: Expectations | None = None) -> RegisteredModel:
    """Register run ``run_id``'s model as the next version of ``model_name`` and make it ``@champion`` (the
    former champion becomes ``@previous``). The run's manifest is verified first (with ``expected``, against the
    features and costs the model must have been built with); a new manifest for the
    registered version (its name, version and ``decision``, a passing governance decision) is signed and
    logged with the files under :func:`registry_path`; the version's tags carry the manifest's hash, key id,
    governance verdict and provenance."""
    if decision.get("passed") is not True:
        raise ConfigError(f"model {model_name}: the governance decision did not pass; nothing is registered")
    if signer.dev and config.refuse_dev_keys:
        raise DevKeyRefused("signing.refuse_dev_keys=true and the signing key is a development key")
    client = MlflowClient(tracking_uri=tracking.tracking_uri)
    with tempfile.TemporaryDirectory(prefix="ai_trading_register_") as scratch:
        uri = f"runs:/{run_id}/{MODEL_FOLDER}"
        local = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=scratch,
                                                    tracking_uri=tracking.tracking_uri)
        with private_copy(Path(local), uri) as directory:
            verified = verify_directory(directory, config, expected or Expectations(None, None, None), where=uri)
            version = _next_version(client, model_name)
            manifest = verified.replace(model_name=model_name, version=version, governance=dict(decision),
                                        created_at=utc_now(), key_id=signer.key_id, algorithm=signer.algorithm)
            write_signed(directory, manifest, signer)
            digest = manifest_digest((directory / MANIFEST_FILE).read_bytes())
            target = registry_path(model_name, version)
            client.log_artifacts(run_id, str(directory), target)
            shutil.rmtree(directory)
    tags = {"manifest_sha256": digest, "key_id": signer.key_id, "signing_algorithm": signer.algorithm,
            "governance_passed": "true", "feature_schema_hash": manifest.feature_schema_hash,
            "dataset_fingerprint": manifest.dataset_fingerprint, "cost_model_hash": manifest.cost_model_hash,
            "config_hash": manifest.config_hash, "git_commit": manifest.git_commit, "sweep_id": manifest.sweep_id}
    mv = client.create_model_version(model_name, source=f"runs:/{run_id}/{target}", run_id=run_id, tags=tags)
    if int(mv.version) != version:
        client.delete_model_version(model_name, mv.version)
        raise ConfigError(f"model {model_name}: another registration took version {version} meanwhile; retry")
    previous = _alias_version(client, model_name, CHAMPION)
    if previous is not None and previous != version:
        client.set_registered_model_alias(model_name, PREVIOUS, str(previous))
    client.set_registered_model_alias(model_name, CHAMPION, str(version))
    log.info("model registered name=%s version=%d run_id=%s champion=%d previous=%s manifest_sha256=%s", model_name,
             version, run_id, version, previous, digest[:12])
    return RegisteredModel(model_name, version, digest, previous)
