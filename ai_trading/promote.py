"""The on-demand promotion job: ``python -m ai_trading.promote sweep_id=<id>``.

Re-reads a finished sweep's runs from MLflow and decides again with the current gates (``governance.*``
overridable on the command line): prints every criterion (value, threshold, verdict), logs the decision to the
sweep's parent run as a new artifact ``governance/decision_<UTC time>.json`` (the sweep's own
``governance/decision.json`` stays) and updates its ``governance.*`` tags, then acts on it as the sweep's end
does: a pass registers the best seed's model (:func:`ai_trading.sweep.register_best_model`) and exits 0; a
rejection registers nothing, writes ``governance/event.json`` (``governance_failed``) and ends with
:class:`~ai_trading.errors.GovernanceRejected`, one line on stderr and exit 2, the exit of every typed error
(an unknown sweep id is a :class:`~ai_trading.errors.ConfigError`); the stderr line's ``[rule]`` tells them
apart.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import hydra
from omegaconf import DictConfig

from ai_trading.cli import run_reported
from ai_trading.errors import ConfigError, GovernanceRejected
from ai_trading.rl.governance import GovernanceDecision, Register
from ai_trading.secrets import mask_text
from ai_trading.sweep import decide, register_best_model
from ai_trading.tracking.runs import sweep_parent
from ai_trading.wiring import PromoteConfig, promote_config

log = logging.getLogger(__name__)


def promote(config: PromoteConfig, *, register: Register) -> GovernanceDecision:
    """Decide sweep ``config.sweep_id`` again, log and print the decision, and register (``register``) its best
    seed's model when it passes. Raises :class:`GovernanceRejected` when it does not."""
    tracking = config.tracking
    parent = sweep_parent(tracking, config.sweep_id)
    if parent is None:
        raise ConfigError(f"sweep_id={config.sweep_id!r}: no sweep with that id in experiment "
                          f"{tracking.experiment_name!r} of the MLflow store {mask_text(tracking.tracking_uri)} "
                          "(the id is the sweep_id tag of its runs; set experiment_name=... for a sweep of another "
                          "experiment)")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    decision = decide(tracking, config.governance, config.sweep_id, parent, expected=config.expected,
                      register=register, show=print, artifact_file=f"governance/decision_{stamp}.json")
    if not decision.passed:
        raise GovernanceRejected(config.sweep_id, decision.reasons)
    return decision


@hydra.main(version_base="1.3", config_path="../conf", config_name="promote")
def main(cfg: DictConfig) -> None:
    def job() -> None:
        config = promote_config(cfg)
        promote(config, register=lambda run_id, payload: register_best_model(
            config.tracking, config.signing, config.expected, run_id, payload))

    run_reported(job)


if __name__ == "__main__":
    main()
