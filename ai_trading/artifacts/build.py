"""Build and sign a model directory's manifest (at the end of training and evaluation, and when a model is
registered)."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ai_trading.artifacts.config import SigningConfig
from ai_trading.artifacts.manifest import (
    MANIFEST_FILE,
    SIGNATURE_FILE,
    Manifest,
    finite_or_none,
    model_files,
    utc_now,
)
from ai_trading.artifacts.signing import Signer
from ai_trading.errors import DevKeyRefused
from ai_trading.secrets import mask_secrets

log = logging.getLogger(__name__)


def config_hash(resolved: Mapping[str, Any]) -> str:
    """SHA-256 of the resolved config with secrets masked, as canonical JSON."""
    text = json.dumps(mask_secrets(dict(resolved)), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Provenance:
    """Where a model came from: data, features, costs, config, code and run."""

    feature_schema_hash: str
    dataset_fingerprint: str
    cost_model_hash: str
    config_hash: str
    git_commit: str
    git_dirty: bool
    seed: int
    sweep_id: str
    run_id: str


def write_signed(directory: Path, manifest: Manifest, signer: Signer) -> Manifest:
    """Write ``manifest.json`` (canonical bytes) and ``manifest.sig`` (the raw signature) into ``directory``; the
    manifest names the signer's key id, algorithm and whether it is a development key."""
    manifest = manifest.replace(key_id=signer.key_id, algorithm=signer.algorithm, dev_key=signer.dev)
    data = manifest.to_bytes()
    (directory / MANIFEST_FILE).write_bytes(data)
    (directory / SIGNATURE_FILE).write_bytes(signer.sign(data))
    return manifest


def sign_directory(directory: Path, *, kind: str, provenance: Provenance, metrics: Mapping[str, float],
                   policy: Mapping[str, Any], signer: Signer, config: SigningConfig,
                   governance: Mapping[str, Any] | None = None) -> Manifest:
    """Hash every file of ``directory`` (all written, MLmodel included), build the manifest and sign it."""
    if signer.dev and config.refuse_dev_keys:
        raise DevKeyRefused("signing.refuse_dev_keys=true and the signing key is a development key",
                            where=str(directory))
    now = datetime.now(UTC)
    expires = (None if config.expires_after_days is None else
               (now + timedelta(days=config.expires_after_days)).strftime("%Y-%m-%dT%H:%M:%SZ"))
    manifest = Manifest(kind=kind, files=model_files(directory), metrics=finite_or_none(metrics),
                        policy=dict(policy), governance=None if governance is None else dict(governance),
                        created_at=utc_now(), expires_at=expires, key_id=signer.key_id, algorithm=signer.algorithm,
                        dev_key=signer.dev, **vars(provenance))
    manifest = write_signed(directory, manifest, signer)
    log.info("manifest signed kind=%s run_id=%s files=%d key_id=%s algorithm=%s", kind, provenance.run_id,
             len(manifest.files), signer.key_id, signer.algorithm)
    return manifest
