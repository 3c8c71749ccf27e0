"""A real tiny training job signs its model with the key of AI_TRADING_SIGNING_KEY and leaks no key material
(params, tags, artifacts, log output); the saved RL model evaluates through the verified loader, and a model
built on other features or costs fails before any run opens."""

from __future__ import annotations

import base64
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from ai_trading.artifacts import Expectations, SigningConfig, load_model
from ai_trading.artifacts.keys import Keyring, generate_key_file
from ai_trading.artifacts.signing import Ed25519Signer, HmacSigner, Signer
from ai_trading.errors import ProvenanceMismatch
from ai_trading.rl_trading.train import TrainedAgent
from ai_trading.tracking import TrackingConfig
from ai_trading.tracking.registry import register_champion, registry_path
from ai_trading.train import run
from ai_trading.wiring import train_config
from tests.conftest import compose_config

TINY = ["data.symbols=[SP500,NVDA]", "data.start=2005-01-01", "data.end=2012-12-31", "algo.progress_bar=false",
        "algo.eval_every=0", "algo.n_envs=8", "algo.total_timesteps=512", "algo.hyperparams.n_steps=64",
        "algo.hyperparams.batch_size=256"]
HMAC_SECRET = "hmac-secret-" + "q7" * 20


def _all_artifacts(client: MlflowClient, run_id: str) -> list[Path]:
    out, pending = [], [""]
    while pending:
        for item in client.list_artifacts(run_id, pending.pop() or None):
            if item.is_dir:
                pending.append(item.path)
            else:
                out.append(Path(client.download_artifacts(run_id, item.path)))
    return out


def _train(tmp: Path, *overrides: str) -> tuple[str, bytes]:
    """One tiny training job through the entrypoint with both key variables set; returns its log output and
    the Ed25519 seed of AI_TRADING_SIGNING_KEY."""
    key = generate_key_file(tmp / "signing.key")
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}", "AI_TRADING_HOME": str(tmp / "home"),
           "AI_TRADING_SIGNING_KEY": str(tmp / "signing.key"), "AI_TRADING_HMAC_KEY": HMAC_SECRET}
    result = subprocess.run([sys.executable, "-m", "ai_trading.train", *TINY, *overrides], cwd=tmp, env=env,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    return result.stdout + result.stderr, key.seed


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, bytes, dict[str, str]]:
    """One tiny training job through the entrypoint with both key variables set (signs with Ed25519)."""
    tmp = tmp_path_factory.mktemp("train_signed")
    output, seed = _train(tmp)
    return tmp, output, seed, {"home": str(tmp / "home"), "public": Ed25519Signer(seed).key_id}


@pytest.fixture(scope="module")
def trained_hmac(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, bytes]:
    """The same job signing with the HMAC secret (signing.algorithm=hmac-sha256)."""
    tmp = tmp_path_factory.mktemp("train_signed_hmac")
    output, seed = _train(tmp, "signing.algorithm=hmac-sha256")
    return tmp, output, seed


def _needles(tmp: Path, seed: bytes) -> list[str]:
    return [seed.hex(), base64.b64encode(seed).decode(), (tmp / "signing.key").read_text().strip(),
            HMAC_SECRET, HMAC_SECRET.encode().hex(), base64.b64encode(HMAC_SECRET.encode()).decode()]


def _assert_no_key_material(client: MlflowClient, run_id: str, output: str, needles: list[str]) -> None:
    """No needle in the log output, the run's params and tags, or any of its artifacts."""
    for needle in needles:
        assert needle not in output
    data = client.get_run(run_id).data
    for key, value in {**data.params, **data.tags}.items():
        for needle in needles:
            assert needle not in key + value, key
    files = _all_artifacts(client, run_id)
    assert any(f.name == "manifest.sig" for f in files)
    for path in files:
        content = path.read_bytes()
        for needle in needles:
            assert needle.encode() not in content, path


def _register_and_scan(tmp: Path, run_id: str, signer: Signer, signing: SigningConfig, needles: list[str],
                       caplog: pytest.LogCaptureFixture) -> None:
    """Register the run's model as a champion; its version tags, the registry/ artifacts and the log output
    hold no key material either."""
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    with caplog.at_level(logging.DEBUG):
        registered = register_champion(TrackingConfig(uri, "ai_trading"), run_id, model_name="desk",
                                       decision={"passed": True}, signer=signer, config=signing)
    version = client.get_model_version("desk", str(registered.version))
    assert version.tags["signing_algorithm"] == signing.algorithm
    for key, value in version.tags.items():
        for needle in needles:
            assert needle not in key + value, key
    _assert_no_key_material(client, run_id, caplog.text, needles)  # the registry/ artifacts are the run's
    target = registry_path("desk", registered.version)
    assert f"{target}/manifest.sig" in {item.path for item in client.list_artifacts(run_id, target)}


def test_training_with_key_variables_leaks_no_key_material(trained: tuple[Path, str, bytes, dict[str, str]],
                                                           caplog: pytest.LogCaptureFixture) -> None:
    tmp, output, seed, info = trained
    needles = _needles(tmp, seed)
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("ai_trading")
    assert experiment is not None
    (run_info,) = client.search_runs([experiment.experiment_id])
    _assert_no_key_material(client, run_info.info.run_id, output, needles)
    assert run_info.data.tags["manifest_key_id"] == info["public"]  # signed with the variable's key, not a dev key
    assert not (Path(info["home"]) / "keys").exists()
    signer = Ed25519Signer(seed)
    Keyring.load().trust(signer.public_key, "trainer")
    _register_and_scan(tmp, run_info.info.run_id, signer, SigningConfig.default(), needles, caplog)


def test_training_signed_with_the_hmac_secret_leaks_no_key_material(trained_hmac: tuple[Path, str, bytes],
                                                                    monkeypatch: pytest.MonkeyPatch,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    tmp, output, seed = trained_hmac
    needles = _needles(tmp, seed)
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("ai_trading")
    assert experiment is not None
    (run_info,) = client.search_runs([experiment.experiment_id])
    _assert_no_key_material(client, run_info.info.run_id, output, needles)
    secret_id = HmacSigner(HMAC_SECRET.encode()).key_id
    assert run_info.data.tags["manifest_key_id"] == secret_id  # signed with the secret: the needles were in use
    monkeypatch.setenv("AI_TRADING_HMAC_KEY", HMAC_SECRET)
    signing = SigningConfig(**{**vars(SigningConfig.default()), "algorithm": "hmac-sha256"})
    _register_and_scan(tmp, run_info.info.run_id, HmacSigner(HMAC_SECRET.encode()), signing, needles, caplog)


def test_saved_rl_model_evaluates_through_the_loader_and_fails_fast_on_other_features_or_costs(
        trained: tuple[Path, str, bytes, dict[str, str]], monkeypatch: pytest.MonkeyPatch) -> None:
    tmp, _, seed, info = trained
    monkeypatch.setenv("AI_TRADING_HOME", info["home"])
    Keyring.load().trust(Ed25519Signer(seed).public_key, "trainer")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("ai_trading")
    assert experiment is not None
    (trained_run,) = client.search_runs([experiment.experiment_id])
    source = f"runs:/{trained_run.info.run_id}/model"
    tags = trained_run.data.tags
    loaded = load_model(source, SigningConfig.default(), Expectations(
        tags["feature_schema_hash"], tags["cost_model_hash"], tags["dataset_fingerprint"], kind="rl"),
        tracking=TrackingConfig(uri, "ai_trading"))
    assert isinstance(loaded.model, TrainedAgent) and loaded.model.normalizer is not None

    base = [*TINY, f"tracking.tracking_uri={uri}", f"model_path={source}"]
    for override, check in (("features.features.0.horizon=2", "feature_schema_hash"),
                            ("simulator=stressed", "cost_model_hash")):
        with pytest.raises(ProvenanceMismatch) as info_error:
            run(train_config(compose_config([*base, override])), [], "single__mismatch")
        assert info_error.value.check == check
        assert len(client.search_runs([experiment.experiment_id])) == 1  # no run opened
    metrics = run(train_config(compose_config(base)), [], "single__saved")
    assert "eval/rl/net/total_return" in metrics
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 2
    evaluated = next(r for r in runs if r.info.run_id != trained_run.info.run_id)
    assert evaluated.data.tags["model_source"] == source and "train/timesteps" in evaluated.data.metrics
