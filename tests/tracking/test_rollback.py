"""Auto-rollback moves ``@champion`` back to the previous model through a new, higher signed version: the loader
accepts it, and a replay of the superseded (older) manifest is refused as a version rollback."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from ai_trading.artifacts.keys import load_signer
from ai_trading.artifacts.loader import Expectations, load_model
from ai_trading.errors import ConfigError, VersionRollback
from ai_trading.tracking.registry import register_champion
from ai_trading.tracking.rollback import rollback_champion
from ai_trading.tracking.runs import TrackingConfig, start_run
from tests.artifacts.helpers import ML_STRATEGY_FILE, config, fitted_ml
from tests.artifacts.test_pyfunc_registry import _pyfunc

EXPECT = Expectations("f" * 64, "c" * 64, None, kind="ml")


def _run(tracking: TrackingConfig, tmp_path: Path, name: str, seed: int) -> str:
    root = tmp_path / name / "model"
    with start_run(tracking, run_name=name, resolved_config={"seed": seed}) as run:
        _pyfunc(root, {ML_STRATEGY_FILE: pickle.dumps(fitted_ml(seed))}, run_id=run.run_id)
        run.log_artifact(root, "model")
    return run.run_id


def test_rollback_moves_champion_back_through_a_new_signed_version(tmp_path: Path, mlflow_uri: str) -> None:
    tracking = TrackingConfig(mlflow_uri, "exp")
    good, bad = _run(tracking, tmp_path, "good", 0), _run(tracking, tmp_path, "bad", 1)
    signer = load_signer(config())
    register_champion(tracking, good, model_name="desk", decision={"passed": True}, signer=signer, config=config())
    register_champion(tracking, bad, model_name="desk", decision={"passed": True}, signer=signer, config=config())
    live = load_model("models:/desk@champion", config(), EXPECT, tracking=tracking)
    assert (live.manifest.version, live.manifest.run_id) == (2, bad)

    done = rollback_champion(tracking, "desk", reason="live.drawdown_breach", signer=signer, config=config(),
                             expected=EXPECT)
    assert (done.replaced, done.restored, done.version) == (2, 1, 3)
    client = MlflowClient(tracking_uri=mlflow_uri)
    assert int(client.get_model_version_by_alias("desk", "champion").version) == 3
    assert client.get_model_version("desk", "2").tags["rolled_back"] == "true"
    back = load_model("models:/desk@champion", config(), EXPECT, tracking=tracking)
    assert (back.manifest.version, back.manifest.run_id) == (3, good)
    assert back.manifest.governance["rollback"] is True and back.manifest.governance["replaced_version"] == 2
    assert pickle.dumps(back.model.pipeline.named_steps["model"].coef_) == pickle.dumps(
        load_model(tmp_path / "good" / "model", config(), EXPECT).model.pipeline.named_steps["model"].coef_)
    for superseded in ("models:/desk/2", "models:/desk/1"):  # replays of older signed manifests
        with pytest.raises(VersionRollback):
            load_model(superseded, config(), EXPECT, tracking=tracking)
    with pytest.raises(ConfigError, match="no previous"):  # once: the bad model is not restored by a second alert
        rollback_champion(tracking, "desk", reason="again", signer=signer, config=config())


def test_rollback_without_a_previous_version_is_refused(tmp_path: Path, mlflow_uri: str) -> None:
    tracking = TrackingConfig(mlflow_uri, "exp")
    only = _run(tracking, tmp_path, "only", 0)
    signer = load_signer(config())
    register_champion(tracking, only, model_name="desk", decision={"passed": True}, signer=signer, config=config())
    with pytest.raises(ConfigError, match="no previous"):
        rollback_champion(tracking, "desk", reason="x", signer=signer, config=config())
    assert int(MlflowClient(tracking_uri=mlflow_uri).get_model_version_by_alias("desk", "champion").version) == 1
