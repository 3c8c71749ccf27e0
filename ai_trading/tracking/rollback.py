"""Auto-rollback: ``@champion`` goes back to ``@previous`` through a new, higher signed version.

The loader refuses any manifest version lower than the last it accepted for a model name (``VersionRollback``),
so a rollback never points ``@champion`` at the old version itself: it registers the previous champion's run
again (:func:`~ai_trading.tracking.registry.register_champion`: its run manifest verified, a manifest for the new
version signed, the files logged beside it) with a decision that says it is a rollback, of what, to what and
why. The replaced version is tagged ``rolled_back=true`` and the ``previous`` alias is removed, so a second
critical alert finds nothing to roll back to instead of restoring the model that was just taken down.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from ai_trading.artifacts.config import SigningConfig
from ai_trading.artifacts.loader import Expectations
from ai_trading.artifacts.signing import Signer
from ai_trading.errors import ConfigError
from ai_trading.tracking.registry import CHAMPION, PREVIOUS, register_champion
from ai_trading.tracking.runs import TrackingConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Rollback:
    """``model_name``'s champion went from ``replaced`` back to the files of ``restored``, now as ``version``."""

    model_name: str
    replaced: int
    restored: int
    version: int
    manifest_sha256: str


def _alias(client: MlflowClient, name: str, alias: str) -> int | None:
    try:
        return int(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def rollback_champion(tracking: TrackingConfig, model_name: str, *, reason: str, signer: Signer,
                      config: SigningConfig, expected: Expectations | None = None) -> Rollback:
    """Make the run of ``@previous`` the champion again as a new signed version; ``ConfigError`` when there is
    no champion or no previous version to go back to."""
    if not isinstance(reason, str) or not reason.strip():
        raise ConfigError("rollback reason: a non-empty string")
    client = MlflowClient(tracking_uri=tracking.tracking_uri)
    champion, previous = _alias(client, model_name, CHAMPION), _alias(client, model_name, PREVIOUS)
    if champion is None or previous is None:
        raise ConfigError(f"model {model_name}: no {'champion' if champion is None else 'previous'} version to roll "
                          "back from/to (a model is rolled back once; register a new champion to go on)")
    run_id = client.get_model_version(model_name, str(previous)).run_id
    if run_id is None:
        raise ConfigError(f"model {model_name} version {previous} names no run: cannot register its files again")
    decision = {"passed": True, "rollback": True, "replaced_version": champion, "restored_version": previous,
                "reason": reason}
    registered = register_champion(tracking, run_id, model_name=model_name, decision=decision, signer=signer,
                                   config=config, expected=expected)
    client.set_model_version_tag(model_name, str(champion), "rolled_back", "true")
    client.set_model_version_tag(model_name, str(registered.version), "rollback_of", str(champion))
    client.delete_registered_model_alias(model_name, PREVIOUS)
    log.warning("model rolled back name=%s replaced=%d restored=%d as_version=%d reason=%s", model_name, champion,
                previous, registered.version, reason)
    return Rollback(model_name, champion, previous, registered.version, registered.manifest_sha256)
