"""Typed configuration of manifest signing and verified loading (``conf/signing/default.yaml``)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from ai_trading.errors import ConfigError
from ai_trading.paths import conf_file

DatasetPolicy = Literal["match", "known", "any"]
SIGNING_CONFIG_ENV = "AI_TRADING_SIGNING_CONFIG"


@dataclass(frozen=True)
class SigningConfig:
    """How manifests are signed and what the verified loader accepts. No Python defaults: the values live in
    ``conf/signing/default.yaml`` (:meth:`default` reads that file for callers without a composed config,
    e.g. MLflow's pyfunc loader)."""

    algorithm: Literal["ed25519", "hmac-sha256"]
    refuse_dev_keys: bool
    dataset_fingerprint_policy: DatasetPolicy
    known_dataset_fingerprints: Sequence[str]
    expires_after_days: int | None
    model_name: str

    def __post_init__(self) -> None:
        if self.algorithm not in ("ed25519", "hmac-sha256"):
            raise ConfigError(f"signing.algorithm={self.algorithm!r}: expected ed25519 or hmac-sha256")
        if not isinstance(self.refuse_dev_keys, bool):
            raise ConfigError(f"signing.refuse_dev_keys={self.refuse_dev_keys!r}: must be true or false")
        if self.dataset_fingerprint_policy not in ("match", "known", "any"):
            raise ConfigError(f"signing.dataset_fingerprint_policy={self.dataset_fingerprint_policy!r}: expected "
                              "match, known or any")
        if isinstance(self.known_dataset_fingerprints, str) or not all(
                isinstance(f, str) for f in self.known_dataset_fingerprints):
            raise ConfigError(f"signing.known_dataset_fingerprints={self.known_dataset_fingerprints!r}: must be a "
                              "list of fingerprints")
        object.__setattr__(self, "known_dataset_fingerprints", tuple(self.known_dataset_fingerprints))
        days = self.expires_after_days
        if days is not None and (isinstance(days, bool) or not isinstance(days, int) or days < 1):
            raise ConfigError(f"signing.expires_after_days={days!r}: must be an integer >= 1 or null")
        try:
            self.model_name.format(experiment="e", algo="a")
        except (KeyError, IndexError, ValueError, AttributeError) as exc:
            raise ConfigError(f"signing.model_name={self.model_name!r}: a template with {{experiment}} and "
                              f"{{algo}} only ({exc})") from None

    def registered_name(self, experiment: str, algo: str) -> str:
        """The registry name of a model of ``experiment`` trained with ``algo``."""
        return self.model_name.format(experiment=experiment, algo=algo)

    @classmethod
    def default(cls, path: Path | None = None) -> SigningConfig:
        """The config of ``path``, else of the file named by ``AI_TRADING_SIGNING_CONFIG`` (how a production
        host sets ``refuse_dev_keys`` for MLflow's pyfunc loader, which has no composed config), else
        ``conf/signing/default.yaml``."""
        named = os.environ.get(SIGNING_CONFIG_ENV)
        path = path or (Path(named) if named else conf_file("signing", "default.yaml"))
        if not path.is_file():
            raise ConfigError(f"signing config {path} not found ({SIGNING_CONFIG_ENV}={named!r})")
        data: Any = yaml.safe_load(path.read_text())
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping")
        data.pop("_target_", None)
        return cls(**data)
