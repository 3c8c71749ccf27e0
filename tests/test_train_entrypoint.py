"""Subprocess smoke tests of the main entrypoint: a seed sweep lands in MLflow; bad input writes nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from mlflow.tracking import MlflowClient

from ai_trading.data import DataConfig, load
from ai_trading.features import FeatureBuilder


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    return subprocess.run([sys.executable, "-m", "ai_trading.train", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)


def test_train_multirun_two_seeds_logs_two_runs_with_provenance(tmp_path: Path) -> None:
    result = _run(tmp_path, "-m", "seed=0,1", "data.symbols=[NVDA]", "data.start=2010-01-01",
                  "data.end=2011-12-31")
    assert result.returncode == 0, result.stderr[-3000:]
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("default")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.info.run_name for r in runs) == ["default__ppo__seed0", "default__ppo__seed1"]
    expected = load(DataConfig(symbols=["NVDA"], start="2010-01-01", end="2011-12-31"))
    for run in runs:
        assert run.info.status == "FINISHED"
        assert run.data.tags["dataset_fingerprint"] == expected.fingerprint
        assert run.data.tags["feature_schema_hash"] == FeatureBuilder.default().schema_hash
        assert run.data.tags["seed"] == run.info.run_name[-1]
    assert (tmp_path / "multirun").is_dir()


def test_train_bad_range_fails_with_named_error_and_writes_no_run(tmp_path: Path) -> None:
    result = _run(tmp_path, "data.start=2012-01-01", "data.end=2011-01-01")
    assert result.returncode != 0
    assert "DataValidationError" in result.stderr and "bad_range" in result.stderr
    assert not (tmp_path / "mlflow.db").exists()
    assert not (tmp_path / "mlruns").exists()
