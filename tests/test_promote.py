"""``python -m ai_trading.promote``: a finished sweep's runs in a real MLflow store, decided again through the
composed config (in process and as a subprocess): the pass path registers the best seed, the fail path
registers nothing and emits governance_failed, thresholds override on the command line, and exit codes."""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from ai_trading.artifacts.build import sign_directory
from ai_trading.artifacts.config import SigningConfig
from ai_trading.artifacts.keys import load_signer
from ai_trading.artifacts.loader import Expectations, load_model
from ai_trading.artifacts.manifest import MANIFEST_FILE, manifest_digest
from ai_trading.errors import ConfigError, GovernanceRejected, ProvenanceMismatch
from ai_trading.promote import promote
from ai_trading.rl.governance import GovernanceDecision
from ai_trading.sweep import register_best_model
from ai_trading.tracking import TrackedRun, TrackingConfig, start_run
from ai_trading.tracking.registry import registry_path, save_pyfunc
from ai_trading.tracking.runs import end_run, open_sweep_parent
from ai_trading.wiring import expected_provenance, promote_config
from tests.artifacts.helpers import FEATURES, ML_STRATEGY_FILE, fitted_ml, provenance
from tests.conftest import compose_config

MODEL_NAME = "ai_trading_ai_trading_ppo"  # signing.model_name for experiment ai_trading, algo ppo
# The provenance a training job of the default config tags its runs and manifests with.
_EXPECTED = expected_provenance(compose_config())
PROVENANCE = {"feature_schema_hash": _EXPECTED.feature_schema_hash, "cost_model_hash": _EXPECTED.cost_model_hash}

SWEEP_ID = "ai_trading__2026-01-02_03-04-05_000006"
SHARPES = (1.4, 1.5, 1.6, 1.55, 1.45)


def _metrics(sharpe: float, net_return: float) -> dict[str, float]:
    """The names the training job logs for the agent and buy-and-hold (``eval/<strategy>/net/<metric>``)."""
    out = {"eval/rl/net/sharpe": sharpe, "eval/rl/net/total_return": net_return, "eval/rl/net/max_drawdown": 0.1,
           "eval/rl/net/turnover": 5.0, "eval/rl/net/periods_per_year": 252.0, "eval/rl/net/n_periods": 1000.0}
    out.update({"eval/buy_and_hold/net/sharpe": 0.3, "eval/buy_and_hold/net/total_return": 0.05,
                "eval/buy_and_hold/net/max_drawdown": 0.2, "eval/buy_and_hold/net/turnover": 0.0})
    return out


def _equity_csv(seed: int) -> str:
    returns = np.random.default_rng(seed).normal(0.0015, 0.01, 1000)
    equity = 1e6 * np.concatenate(([1.0], np.cumprod(1 + returns)))
    index = pd.date_range("2020-01-01", periods=equity.size, tz="UTC", name="timestamp")
    frame = pd.DataFrame({"rl/net": equity, "rl/gross": equity, "buy_and_hold/net": equity,
                          "buy_and_hold/gross": equity}, index=index)
    return frame.to_csv(index_label="timestamp")


def _signed_model(run: TrackedRun, scratch: Path, seed: int) -> None:
    """A real fitted model logged as the training job logs it: a pyfunc directory under ``model/`` with its
    manifest signed by this machine's key."""
    files = scratch / f"files{seed}"
    files.mkdir(parents=True)
    # Fitted on the default features, as the job's model would be.
    model = dataclasses.replace(fitted_ml(seed), schema_hash=PROVENANCE["feature_schema_hash"])
    (files / ML_STRATEGY_FILE).write_bytes(pickle.dumps(model))
    root = scratch / f"seed{seed}" / "model"
    data_path = save_pyfunc(root, files)
    signing = SigningConfig.default()
    sign_directory(root, kind="ml", provenance=provenance(run.run_id, seed=seed, sweep_id=SWEEP_ID, **PROVENANCE),
                   metrics={"eval/rl/net/sharpe": SHARPES[seed % 5]},
                   policy={"feature_names": list(FEATURES), "data_path": data_path},
                   signer=load_signer(signing), config=signing)
    run.log_artifact(root, "model")


def _sweep(uri: str, seeds: int = 5, net_return: float = 0.12, configs: tuple[str, ...] = ("",),
           failed: tuple[int, ...] = (), models: Path | None = None) -> dict[tuple[str, int], str]:
    """A finished sweep as the training job leaves it: a parent tagged sweep_id, one run per configuration and
    seed nested under it with its metrics and ``eval/equity.csv`` (and, with ``models``, a scratch folder, its
    signed model); ``failed`` seeds end FAILED."""
    tracking = TrackingConfig(uri, "ai_trading")
    parent = open_sweep_parent(tracking, run_name="ai_trading__ppo__sweep", sweep_id=SWEEP_ID,
                               overrides=["seed=0,1,2,3,4"], note="")
    ids = {}
    for c, config in enumerate(configs):
        for seed in range(seeds):
            overrides = [f"seed={seed}", *config.split()]
            if seed in failed:
                with pytest.raises(RuntimeError), start_run(
                        tracking, run_name=f"seed{seed}", resolved_config={}, overrides=overrides,
                        tags={"sweep_id": SWEEP_ID, "seed": seed}, parent_run_id=parent) as run:
                    ids[(config, seed)] = run.run_id
                    raise RuntimeError("boom in training")
                continue
            with start_run(tracking, run_name=f"seed{seed}", resolved_config={}, overrides=overrides,
                           tags={"sweep_id": SWEEP_ID, "seed": seed, "experiment": "ai_trading", "algo": "ppo",
                                 **PROVENANCE},
                           parent_run_id=parent) as run:
                run.log_metrics(_metrics(SHARPES[seed % 5] - c, net_return))
                if models is not None:
                    _signed_model(run, models / f"c{c}", seed)
                run.log_text(_equity_csv(seed), "eval/equity.csv")
                ids[(config, seed)] = run.run_id
    end_run(tracking, parent, "FINISHED")
    ids[("parent", -1)] = parent
    return ids


def _promote(uri: str, *overrides: str) -> tuple[GovernanceDecision, list[tuple[str, dict[str, Any]]]]:
    config = promote_config(compose_config([f"sweep_id={SWEEP_ID}", f"tracking.tracking_uri={uri}", *overrides],
                                           config_name="promote"))
    registered: list[tuple[str, dict[str, Any]]] = []
    decision = promote(config, register=lambda run_id, payload: registered.append((run_id, payload)))
    return decision, registered


def _artifacts(client: MlflowClient, run_id: str) -> set[str]:
    return {a.path for a in client.list_artifacts(run_id, "governance")}


def test_promote_passes_logs_a_new_decision_and_registers_the_best_seed(
        mlflow_uri: str, capsys: pytest.CaptureFixture[str]) -> None:
    ids = _sweep(mlflow_uri)
    decision, registered = _promote(mlflow_uri)
    assert decision.passed and decision.n_trials == 5
    assert registered == [(ids[("", 2)], decision.to_dict())]  # seed 2 has the highest net Sharpe
    printed = capsys.readouterr().out
    for criterion in decision.criteria:
        assert criterion.name in printed
    assert "PASSED" in printed
    client = MlflowClient(tracking_uri=mlflow_uri)
    parent = ids[("parent", -1)]
    (path,) = _artifacts(client, parent)
    assert path.startswith("governance/decision_") and path.endswith(".json")
    logged = GovernanceDecision.from_dict(json.loads(Path(client.download_artifacts(parent, path)).read_text()))
    assert logged.to_dict() == decision.to_dict()
    tags = client.get_run(parent).data.tags
    assert tags["governance.passed"] == "true" and tags["governance.best_run_id"] == ids[("", 2)]
    assert tags["governance.decision"] == path


def test_promote_rejects_registers_nothing_and_emits_governance_failed(mlflow_uri: str) -> None:
    ids = _sweep(mlflow_uri, net_return=-0.02)
    with pytest.raises(GovernanceRejected, match=r"mean net return -2\.00% after costs") as caught:
        _promote(mlflow_uri)
    parent = ids[("parent", -1)]
    client = MlflowClient(tracking_uri=mlflow_uri)
    event = json.loads(Path(client.download_artifacts(parent, "governance/event.json")).read_text())
    assert event["kind"] == "governance_failed" and event["sweep_id"] == SWEEP_ID
    assert event["reasons"] == list(caught.value.reasons)
    assert client.get_run(parent).data.tags["governance.passed"] == "false"


def _promote_and_register(uri: str, *overrides: str) -> GovernanceDecision:
    config = promote_config(compose_config([f"sweep_id={SWEEP_ID}", f"tracking.tracking_uri={uri}", *overrides],
                                           config_name="promote"))
    return promote(config, register=lambda run_id, payload: register_best_model(
        config.tracking, config.signing, config.expected, run_id, payload))


def test_a_passing_sweep_registers_its_best_seed_as_champion_with_a_manifest_that_verifies(
        tmp_path: Path, mlflow_uri: str, capsys: pytest.CaptureFixture[str]) -> None:
    ids = _sweep(mlflow_uri, models=tmp_path / "models")
    decision = _promote_and_register(mlflow_uri)
    best = ids[("", 2)]
    assert decision.passed
    client = MlflowClient(tracking_uri=mlflow_uri)
    champion = client.get_model_version_by_alias(MODEL_NAME, "champion")
    assert (int(champion.version), champion.run_id) == (1, best)
    assert f"registered models:/{MODEL_NAME}@champion = version 1 (run {best}; @previous = none)" in \
        capsys.readouterr().out
    # The manifest attached for the version covers the model, carries the decision and verifies on load.
    manifest = Path(client.download_artifacts(best, f"{registry_path(MODEL_NAME, 1)}/{MANIFEST_FILE}",
                                              str(tmp_path / "dl")))
    assert champion.tags["manifest_sha256"] == manifest_digest(manifest.read_bytes())
    assert champion.tags["governance_passed"] == "true" and champion.tags["sweep_id"] == SWEEP_ID
    loaded = load_model(f"models:/{MODEL_NAME}@champion", SigningConfig.default(),
                        Expectations(**PROVENANCE, dataset_fingerprint=None, kind="ml"),
                        tracking=TrackingConfig(mlflow_uri, "x"))
    assert (loaded.manifest.run_id, loaded.manifest.version) == (best, 1)
    assert loaded.manifest.governance == decision.to_dict()
    # Deciding again registers the next version: it becomes champion, the former one previous.
    _promote_and_register(mlflow_uri)
    assert int(client.get_model_version_by_alias(MODEL_NAME, "champion").version) == 2
    assert int(client.get_model_version_by_alias(MODEL_NAME, "previous").version) == 1


def test_a_failing_sweep_registers_nothing_and_emits_governance_failed(tmp_path: Path, mlflow_uri: str) -> None:
    ids = _sweep(mlflow_uri, net_return=-0.02, models=tmp_path / "models")
    with pytest.raises(GovernanceRejected):
        _promote_and_register(mlflow_uri)
    client = MlflowClient(tracking_uri=mlflow_uri)
    assert client.search_registered_models() == []
    event = json.loads(Path(client.download_artifacts(ids[("parent", -1)], "governance/event.json")).read_text())
    assert event["kind"] == "governance_failed" and any("mean net return" in r for r in event["reasons"])


@pytest.mark.parametrize("override", ["simulator=stressed", "features.version=99"])
def test_a_sweep_trained_on_other_costs_or_features_is_refused_before_anything_is_logged(
        tmp_path: Path, mlflow_uri: str, override: str) -> None:
    ids = _sweep(mlflow_uri, models=tmp_path / "models")
    check = "cost_model_hash" if override.startswith("simulator") else "feature_schema_hash"
    with pytest.raises(ProvenanceMismatch, match=check):
        _promote_and_register(mlflow_uri, override)
    client = MlflowClient(tracking_uri=mlflow_uri)
    assert _artifacts(client, ids[("parent", -1)]) == set()
    assert client.search_registered_models() == []


def test_thresholds_override_on_the_command_line(mlflow_uri: str) -> None:
    ids = _sweep(mlflow_uri, seeds=3)
    with pytest.raises(GovernanceRejected, match="3 of 3 seeds finished, below the 5 minimum"):
        _promote(mlflow_uri)
    decision, registered = _promote(mlflow_uri, "governance.min_seeds=3")
    assert decision.passed and decision.config.min_seeds == 3
    assert [run_id for run_id, _ in registered] == [ids[("", 2)]]


def test_a_failed_seed_counts_against_the_sweep(mlflow_uri: str) -> None:
    ids = _sweep(mlflow_uri, seeds=6, failed=(1,))
    decision, _ = _promote(mlflow_uri)
    assert decision.n_seeds == 6 and decision.n_finished == 5 and decision.n_trials == 6
    (failed,) = decision.failed_seeds
    assert failed.run_id == ids[("", 1)] and failed.error == "RuntimeError: boom in training"
    assert decision.criterion("fraction_beating_buy_and_hold").value == pytest.approx(5 / 6)


def test_a_sweep_over_configurations_decides_its_best_one_with_every_run_as_a_trial(mlflow_uri: str) -> None:
    ids = _sweep(mlflow_uri, configs=("algo.hyperparams.learning_rate=0.001", "algo.hyperparams.learning_rate=0.1"))
    decision, registered = _promote(mlflow_uri)
    assert decision.n_trials == 10 and decision.n_seeds == 5
    assert {s.run_id for s in decision.seeds} == {ids[("algo.hyperparams.learning_rate=0.001", s)] for s in range(5)}
    assert registered[0][0] == ids[("algo.hyperparams.learning_rate=0.001", 2)]


def test_an_unknown_sweep_id_is_a_config_error(mlflow_uri: str) -> None:
    _sweep(mlflow_uri)
    config = promote_config(compose_config(["sweep_id=nope", f"tracking.tracking_uri={mlflow_uri}"],
                                           config_name="promote"))
    with pytest.raises(ConfigError, match="sweep_id='nope': no sweep with that id in experiment 'ai_trading'"):
        promote(config, register=lambda run_id, payload: None)


def _run(tmp_path: Path, uri: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ai_trading.promote", *args], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "MLFLOW_TRACKING_URI": uri})


def test_entrypoint_exit_codes_pass_fail_and_unknown_sweep(tmp_path: Path, mlflow_uri: str) -> None:
    ids = _sweep(mlflow_uri, seeds=3, models=tmp_path / "models")
    passed = _run(tmp_path, mlflow_uri, f"sweep_id={SWEEP_ID}", "governance.min_seeds=3")
    assert passed.returncode == 0, passed.stderr[-3000:]
    assert "PASSED" in passed.stdout and "deflated_sharpe" in passed.stdout
    assert f"registered models:/{MODEL_NAME}@champion = version 1 (run {ids[('', 2)]}" in passed.stdout
    failed = _run(tmp_path, mlflow_uri, f"sweep_id={SWEEP_ID}")
    assert failed.returncode == 2
    assert "REJECTED" in failed.stdout and "seeds_finished" in failed.stdout
    assert f"error: [GovernanceRejected] sweep {SWEEP_ID} rejected by governance, 1 criteria failed: 3 of 3 seeds " \
           "finished, below the 5 minimum" in failed.stderr
    assert "Traceback" not in failed.stderr
    parent = ids[("parent", -1)]
    client = MlflowClient(tracking_uri=mlflow_uri)
    assert len([p for p in _artifacts(client, parent) if p.startswith("governance/decision_")]) == 2
    assert "governance/event.json" in _artifacts(client, parent)
    unknown = _run(tmp_path, mlflow_uri, "sweep_id=nope")
    assert unknown.returncode == 2 and "error: [ConfigError] sweep_id='nope'" in unknown.stderr
    missing = _run(tmp_path, mlflow_uri)
    assert missing.returncode == 2 and "error: [ConfigError] sweep_id is required" in missing.stderr


def test_entrypoint_help_lists_its_groups_and_examples() -> None:
    out = subprocess.run([sys.executable, "-m", "ai_trading.promote", "--help"], capture_output=True, text=True,
                         check=True).stdout
    assert "governance: default\nsigning: default\nfeatures: default_daily, default_intraday\nsimulator: default, " \
        "intraday, stressed, zero_cost\ncost_model: ewma\ntracking: mlflow" in out
    assert "python -m ai_trading.promote sweep_id=" in out and "min_deflated_sharpe: 0.95" in out
