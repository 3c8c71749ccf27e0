"""Subprocess smoke tests of the main entrypoint: real training, evaluation and MLflow logging."""

from __future__ import annotations

import math
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from ai_trading.data import DataConfig, load
from ai_trading.features import FeatureBuilder
from tests.secret_markers import SecretScan

TINY = ["data.symbols=[SP500,NVDA]", "data.start=2005-01-01", "data.end=2012-12-31", "algo.progress_bar=false",
        "algo.eval_every=0", "algo.n_envs=8"]


# Random per process, so a copy of this source (the run's git diff of the working tree) is no finding.
SECRET = f"pw-{secrets.token_hex(6)}"


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # A DSN with a password in the environment: it is part of the composed config (oms.dsn) and must be masked
    # everywhere the run writes.
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
           "AI_TRADING_OMS_DSN": f"postgresql+psycopg://u:{SECRET}@127.0.0.1/db"}
    return subprocess.run([sys.executable, "-m", "ai_trading.train", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=900)


def _runs(tmp_path: Path) -> list:  # type: ignore[type-arg]
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("ai_trading")
    assert experiment is not None
    # The seeds' runs; a sweep's parent run (its summary) is tested in tests/test_sweep.py.
    return [r for r in client.search_runs([experiment.experiment_id]) if r.data.tags.get("sweep_role") != "parent"]


NAMED = "__symbols=SP500,NVDA_start=2005-01-01_end=2012-12-31"  # TINY's overrides show in run names


def _seeds_named(runs: list, algo: str = "ppo") -> list[str]:  # type: ignore[type-arg]
    """The seed part of each run's name ``ai_trading__{algo}__seed{n}__{overrides}``."""
    assert all(r.info.run_name.startswith(f"ai_trading__{algo}__seed") and NAMED in r.info.run_name
               for r in runs), [r.info.run_name for r in runs]
    return sorted(r.info.run_name.split("__")[2] for r in runs)


def test_train_multirun_two_seeds_logs_runs_with_provenance_metrics_and_model(tmp_path: Path) -> None:
    result = _run(tmp_path, "-m", "seed=0,1", *TINY, "algo.total_timesteps=4096",
                  "algo.hyperparams.n_steps=64", "algo.hyperparams.batch_size=256")
    assert result.returncode == 0, result.stderr[-4000:]
    runs = _runs(tmp_path)
    assert _seeds_named(runs) == ["seed0", "seed1"]
    expected = load(DataConfig(symbols=["SP500", "NVDA"], start="2005-01-01", end="2012-12-31"))
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    sweep_ids = {r.data.tags["sweep_id"] for r in runs}
    assert len(sweep_ids) == 1  # one multirun, one sweep id grouping its seeds
    for run in runs:
        assert run.info.status == "FINISHED"
        assert run.data.tags["dataset_fingerprint"] == expected.fingerprint
        assert run.data.tags["feature_schema_hash"] == FeatureBuilder.default().schema_hash
        assert f"__seed{run.data.tags['seed']}__" in run.info.run_name
        for name in ("rl", "buy_and_hold", "cash", "trend"):
            assert f"eval/{name}/net/total_return" in run.data.metrics
            assert f"eval/{name}/gross/total_return" in run.data.metrics
        assert run.data.metrics["train/timesteps"] >= 4096
        assert any(k.startswith("train/") and k != "train/timesteps" for k in run.data.metrics)  # SB3's own
        model = {a.path for a in client.list_artifacts(run.info.run_id, "model")}
        # An MLflow pyfunc directory (the SB3 files under data/files/) with its signed manifest
        assert {"model/MLmodel", "model/data", "model/manifest.json", "model/manifest.sig"} <= model
        files = {a.path for a in client.list_artifacts(run.info.run_id, "model/data/files")}
        assert files == {"model/data/files/model.zip", "model/data/files/vecnormalize.pkl"}
        plots = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
        assert {"plots/equity.png", "plots/drawdown.png"} <= plots
    assert "sweep " in result.stderr + result.stdout  # the sweep-end callback summarised the seeds
    _assert_secret_nowhere(tmp_path, runs, result)


def _assert_secret_nowhere(tmp_path: Path, runs: list, result: subprocess.CompletedProcess[str]) -> None:  # type: ignore[type-arg]
    """The DSN password reaches no log line, nor anything the MLflow store holds; the masked DSN is still logged."""
    for run in runs:
        assert run.data.params["oms.dsn"] == "postgresql+psycopg://u:***@127.0.0.1/db"
    scan = SecretScan({"oms dsn password": SECRET.encode()})
    scan.text("job output", result.stdout + result.stderr)
    assert scan.mlflow(f"sqlite:///{tmp_path / 'mlflow.db'}") >= len(runs)
    scan.assert_clean()


@pytest.mark.slow
@pytest.mark.parametrize(
    "algo_overrides",
    [
        ["algo=a2c", "algo.total_timesteps=2000"],
        ["algo=sac", "algo.total_timesteps=600", "algo.n_envs=4", "algo.hyperparams.learning_starts=200",
         "algo.hyperparams.batch_size=64"],
        ["algo=td3", "algo.total_timesteps=600", "algo.n_envs=4", "algo.hyperparams.learning_starts=200",
         "algo.hyperparams.batch_size=64"],
    ],
    ids=["a2c", "sac", "td3"],
)
def test_train_each_algorithm_tiny_run_finishes_and_logs(tmp_path: Path, algo_overrides: list[str]) -> None:
    result = _run(tmp_path, *TINY, *algo_overrides)
    assert result.returncode == 0, result.stderr[-4000:]
    (run,) = _runs(tmp_path)
    algo = algo_overrides[0].split("=")[1]
    assert _seeds_named([run], algo) == ["seed0"]
    metrics = run.data.metrics
    assert math.isfinite(metrics["eval/rl/net/total_return"])
    # The out-of-sample Sharpe is a number whenever the agent traded (a flat book has no return spread).
    assert math.isfinite(metrics["eval/rl/net/sharpe"]) or metrics["eval/rl/net/turnover"] == 0.0


def test_train_bad_range_fails_with_named_error_and_writes_no_run(tmp_path: Path) -> None:
    result = _run(tmp_path, "data.start=2012-01-01", "data.end=2011-01-01")
    assert result.returncode != 0
    assert "error: [bad_range]" in result.stderr
    assert not (tmp_path / "mlflow.db").exists()
    assert not (tmp_path / "mlruns").exists()


@pytest.mark.slow
def test_train_parallel_launcher_seeds_share_one_store_without_races(tmp_path: Path) -> None:
    """joblib runs the seeds in parallel processes; the store is prepared once before they start."""
    result = _run(tmp_path, "-m", "seed=0,1", "hydra/launcher=local_parallel", "torch_threads=1", *TINY,
                  "algo.total_timesteps=1024", "algo.hyperparams.n_steps=64", "algo.hyperparams.batch_size=256")
    assert result.returncode == 0, result.stderr[-4000:]
    runs = _runs(tmp_path)
    assert _seeds_named(runs) == ["seed0", "seed1"]
    assert all(r.info.status == "FINISHED" for r in runs)
