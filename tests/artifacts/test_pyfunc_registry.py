"""The pyfunc path (``mlflow.pyfunc.load_model``) verifies before it deserialises and predicts target weights;
the registry registers a champion with a manifest re-signed for its version, moves ``champion`` and
``previous``, and ``models:/<name>@champion`` verifies on load."""

from __future__ import annotations

import os
from pathlib import Path

import gymnasium as gym
import mlflow
import numpy as np
import pandas as pd
import pytest
from gymnasium import spaces
from mlflow.tracking import MlflowClient
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

from ai_trading.artifacts.build import sign_directory
from ai_trading.artifacts.keys import Keyring, load_signer
from ai_trading.artifacts.loader import Expectations, load_model
from ai_trading.artifacts.manifest import MANIFEST_FILE, Manifest, manifest_digest
from ai_trading.artifacts.signing import Ed25519Signer
from ai_trading.errors import ConfigError, FileHashMismatch, ManifestVerificationError, VersionRollback
from ai_trading.rl_trading.train import TrainedAgent
from ai_trading.tracking import TrackingConfig
from ai_trading.tracking.registry import register_champion, registry_path, save_pyfunc
from ai_trading.tracking.runs import start_run
from tests.artifacts.helpers import (
    FEATURES,
    MARKER_ENV,
    ML_STRATEGY_FILE,
    config,
    fitted_ml,
    provenance,
    recorder_bytes,
)

SYMBOLS = ["AAA", "BBB"]


@pytest.fixture
def marker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "unpickled.txt"
    monkeypatch.setenv(MARKER_ENV, str(path))
    return path


def _pyfunc(root: Path, write: dict[str, bytes], *, kind: str = "ml", policy: dict | None = None,  # type: ignore[type-arg]
            run_id: str = "run0") -> Manifest:
    files = root.parent / f"{root.name}_files"
    files.mkdir(parents=True)
    for name, data in write.items():
        (files / name).write_bytes(data)
    data_path = save_pyfunc(root, files)
    signer = load_signer(config())
    return sign_directory(root, kind=kind, provenance=provenance(run_id), metrics={"eval/rl/net/sharpe": float("nan")},
                          policy={"feature_names": list(FEATURES), **(policy or {}), "data_path": data_path},
                          signer=signer, config=config())


def _rows(seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(rng.normal(size=(len(SYMBOLS), len(FEATURES))), index=pd.Index(SYMBOLS, name="symbol"),
                        columns=list(FEATURES))


def test_pyfunc_ml_model_predicts_target_weights_after_verification(tmp_path: Path) -> None:
    import pickle

    fitted = fitted_ml()
    root = tmp_path / "model"
    manifest = _pyfunc(root, {ML_STRATEGY_FILE: pickle.dumps(fitted)})
    assert "MLmodel" in manifest.files and f"data/{root.name}_files/{ML_STRATEGY_FILE}" in manifest.files
    assert manifest.metrics["eval/rl/net/sharpe"] is None  # NaN is recorded as null
    frame = _rows()
    out = mlflow.pyfunc.load_model(str(root)).predict(frame)
    raw = fitted.pipeline.predict(frame.to_numpy()) / fitted.score_scale
    expected = np.clip(fitted.config.gain * raw, -fitted.config.max_weight, fitted.config.max_weight) / len(SYMBOLS)
    np.testing.assert_allclose(out["target_weight"].to_numpy(), expected)
    assert list(out.index) == SYMBOLS


def test_pyfunc_path_never_unpickles_a_tampered_model(tmp_path: Path, marker: Path) -> None:
    root = tmp_path / "model"
    _pyfunc(root, {ML_STRATEGY_FILE: recorder_bytes("pyfunc")})
    for victim in (root / "MLmodel", root / "requirements.txt",
                   root / "data" / "model_files" / ML_STRATEGY_FILE):
        original = victim.read_bytes()
        victim.write_bytes(original + b"\n")
        with pytest.raises(FileHashMismatch):
            mlflow.pyfunc.load_model(str(root))
        assert not marker.exists()
        victim.write_bytes(original)
    with pytest.raises(ManifestVerificationError):  # verified, unpickled (the instrument), then not a strategy
        mlflow.pyfunc.load_model(str(root))
    assert marker.read_text() == "pyfunc\n"


class _Spaces(gym.Env):  # type: ignore[type-arg]
    n_obs = len(SYMBOLS) * len(FEATURES) + 6 + len(SYMBOLS)
    observation_space = spaces.Box(-np.inf, np.inf, shape=(n_obs,), dtype=np.float32)
    action_space = spaces.Box(0.0, 1.0, shape=(len(SYMBOLS),), dtype=np.float32)


def _rl_files(tmp_path: Path) -> tuple[TrainedAgent, dict[str, bytes]]:
    venv = VecNormalize(DummyVecEnv([_Spaces]), training=False)
    venv.obs_rms.mean = np.linspace(-1, 1, _Spaces.n_obs)
    agent = TrainedAgent(PPO("MlpPolicy", venv, seed=0, device="cpu"), venv, 0)
    out = tmp_path / "rl_saved"
    agent.save(out)
    return agent, {p.name: p.read_bytes() for p in out.iterdir()}


def test_pyfunc_rl_model_maps_feature_rows_and_weights_to_constrained_targets(tmp_path: Path) -> None:
    agent, files = _rl_files(tmp_path)
    policy = {"algo": "ppo", "symbols": SYMBOLS, "long_only": True, "max_position": 0.6, "max_leverage": 1.0}
    root = tmp_path / "model"
    _pyfunc(root, files, kind="rl", policy=policy)
    frame = _rows().assign(weight=[0.2, 0.3], drawdown=0.05)
    out = mlflow.pyfunc.load_model(str(root)).predict(frame.reset_index())
    w = np.array([0.2, 0.3])
    obs = np.concatenate([frame[list(FEATURES)].to_numpy().reshape(-1), [0.5], w, [0.5, 0.5, 0.5, 0.0, 0.05]])
    action = agent.act(obs.astype(np.float32)[None, :])[0]
    target = np.clip(action, 0.0, 1.0) * 0.6
    if np.abs(target).sum() > 1.0:
        target = target / np.abs(target).sum()
    np.testing.assert_allclose(out["target_weight"].to_numpy(), target, rtol=1e-6)
    assert (out["target_weight"] >= 0).all() and out["target_weight"].abs().sum() <= 1.0 + 1e-12


def _logged_run(tracking: TrackingConfig, tmp_path: Path, name: str) -> str:
    import pickle

    root = tmp_path / name / "model"
    with start_run(tracking, run_name=name, resolved_config={"seed": 0}) as run:
        _pyfunc(root, {ML_STRATEGY_FILE: pickle.dumps(fitted_ml())}, run_id=run.run_id)
        run.log_artifact(root, "model")
    return run.run_id


def test_register_champion_moves_aliases_and_models_uri_verifies(tmp_path: Path, mlflow_uri: str,
                                                                 marker: Path) -> None:
    tracking = TrackingConfig(mlflow_uri, "exp")
    first, second = _logged_run(tracking, tmp_path, "a"), _logged_run(tracking, tmp_path, "b")
    signer = load_signer(config())
    decision = {"passed": True, "criteria": [{"name": "min_seeds", "value": 5, "threshold": 5, "passed": True}]}
    with pytest.raises(ConfigError, match="did not pass"):
        register_champion(tracking, first, model_name="desk", decision={"passed": False}, signer=signer,
                          config=config())
    client = MlflowClient(tracking_uri=mlflow_uri)
    assert client.search_model_versions("name='desk'") == []
    v1 = register_champion(tracking, first, model_name="desk", decision=decision, signer=signer, config=config())
    v2 = register_champion(tracking, second, model_name="desk", decision=decision, signer=signer, config=config())
    assert (v1.version, v1.previous, v2.version, v2.previous) == (1, None, 2, 1)
    assert int(client.get_model_version_by_alias("desk", "champion").version) == 2
    assert int(client.get_model_version_by_alias("desk", "previous").version) == 1
    tags = client.get_model_version("desk", "2").tags
    stored = Path(mlflow.artifacts.download_artifacts(
        artifact_uri=f"runs:/{second}/{registry_path('desk', 2)}/{MANIFEST_FILE}", tracking_uri=mlflow_uri,
        dst_path=str(tmp_path / "dl")))
    assert tags["manifest_sha256"] == manifest_digest(stored.read_bytes()) == v2.manifest_sha256
    assert tags["key_id"] == signer.key_id and tags["governance_passed"] == "true"
    assert tags["feature_schema_hash"] == "f" * 64 and tags["cost_model_hash"] == "c" * 64

    loaded = load_model("models:/desk@champion", config(), Expectations("f" * 64, "c" * 64, "d" * 64, kind="ml"),
                        tracking=tracking)
    assert (loaded.manifest.model_name, loaded.manifest.version, loaded.manifest.run_id) == ("desk", 2, second)
    assert loaded.manifest.governance == decision
    os.environ["MLFLOW_TRACKING_URI"] = mlflow_uri
    try:
        out = mlflow.pyfunc.load_model("models:/desk@champion").predict(_rows())
        assert out["target_weight"].notna().all()
        with pytest.raises(VersionRollback):  # version 2 was accepted; version 1 is older
            load_model("models:/desk/1", config(), Expectations(None, None, None), tracking=tracking)
        with pytest.raises(VersionRollback):
            mlflow.pyfunc.load_model("models:/desk/1")
    finally:
        del os.environ["MLFLOW_TRACKING_URI"]


def test_registry_refuses_to_register_a_tampered_run_model(tmp_path: Path, mlflow_uri: str) -> None:
    tracking = TrackingConfig(mlflow_uri, "exp")
    run_id = _logged_run(tracking, tmp_path, "a")
    artifact_root = Path(MlflowClient(tracking_uri=mlflow_uri).get_run(run_id).info.artifact_uri.removeprefix(
        "file://"))
    mlmodel = artifact_root / "model" / "MLmodel"
    mlmodel.write_text(mlmodel.read_text().replace("ai_trading.artifacts.pyfunc", "evil.loader"))
    with pytest.raises(FileHashMismatch):
        register_champion(tracking, run_id, model_name="desk", decision={"passed": True},
                          signer=load_signer(config()), config=config())
    assert MlflowClient(tracking_uri=mlflow_uri).search_model_versions("name='desk'") == []
    assert Keyring.load().keys  # the dev key the run signed with is trusted locally
    assert isinstance(load_signer(config()), Ed25519Signer)


def test_pyfunc_path_takes_refuse_dev_keys_from_the_named_signing_config(tmp_path: Path, marker: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from ai_trading.errors import DevKeyRefused
    from ai_trading.paths import conf_file

    root = tmp_path / "model"
    _pyfunc(root, {ML_STRATEGY_FILE: recorder_bytes("dev")})  # signed with the local dev key
    production = tmp_path / "signing.yaml"
    production.write_text(conf_file("signing", "default.yaml").read_text().replace(
        "refuse_dev_keys: false", "refuse_dev_keys: true"))
    monkeypatch.setenv("AI_TRADING_SIGNING_CONFIG", str(production))
    with pytest.raises(DevKeyRefused):
        mlflow.pyfunc.load_model(str(root))
    assert not marker.exists()


def test_a_tampered_registered_version_is_refused_on_both_load_paths_unopened(
        tmp_path: Path, mlflow_uri: str, marker: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tracking = TrackingConfig(mlflow_uri, "exp")
    root = tmp_path / "model"
    with start_run(tracking, run_name="r", resolved_config={"seed": 0}) as run:
        _pyfunc(root, {ML_STRATEGY_FILE: recorder_bytes("registered")}, run_id=run.run_id)
        run.log_artifact(root, "model")
    register_champion(tracking, run.run_id, model_name="desk", decision={"passed": True},
                      signer=load_signer(config()), config=config())
    artifact_root = Path(MlflowClient(tracking_uri=mlflow_uri).get_run(run.run_id).info.artifact_uri.removeprefix(
        "file://"))
    victim = artifact_root / registry_path("desk", 1) / "data" / "model_files" / ML_STRATEGY_FILE
    victim.write_bytes(recorder_bytes("swapped"))
    with pytest.raises(FileHashMismatch):
        load_model("models:/desk@champion", config(), Expectations(None, None, None), tracking=tracking)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
    with pytest.raises(FileHashMismatch):
        mlflow.pyfunc.load_model("models:/desk@champion")
    assert not marker.exists()
