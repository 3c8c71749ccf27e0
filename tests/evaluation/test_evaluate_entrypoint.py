"""Subprocess smoke test of the evaluation entrypoint: metrics of strategy and baselines, provenance tags,
CSVs and PNG plots land in MLflow; the table is printed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from mlflow.tracking import MlflowClient

from ai_trading.data import DataConfig, load
from ai_trading.features import FeatureBuilder


def _artifacts(client: MlflowClient, run_id: str, path: str = "") -> set[str]:
    out: set[str] = set()
    for item in client.list_artifacts(run_id, path or None):
        out |= _artifacts(client, run_id, item.path) if item.is_dir else {item.path}
    return out


def test_evaluate_entrypoint_logs_strategy_baselines_provenance_and_plots(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = ["data.symbols=[SP500]", "data.start=2008-01-01", "data.end=2012-12-31", "strategy=ml",
            "walkforward.n_folds=2", "walkforward.train_bars=400", "strategy.cv_splits=3"]
    result = subprocess.run([sys.executable, "-m", "ai_trading.evaluate", *args], cwd=tmp_path,
                            env={**os.environ, "MLFLOW_TRACKING_URI": uri}, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    for name in ("ml", "buy_and_hold", "cash", "trend"):
        assert name in result.stdout
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("evaluate")
    assert experiment is not None
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED"
    metrics = run.data.metrics
    for name in ("ml", "buy_and_hold", "cash", "trend"):
        for kind in ("net", "gross"):
            assert f"eval/{name}/{kind}/total_return" in metrics
    assert metrics["eval/ml/net/total_return"] < metrics["eval/ml/gross/total_return"]
    assert metrics["eval/cash/net/total_return"] == 0.0
    expected = load(DataConfig(symbols=["SP500"], start="2008-01-01", end="2012-12-31"))
    assert run.data.tags["dataset_fingerprint"] == expected.fingerprint
    assert run.data.tags["feature_schema_hash"] == FeatureBuilder.default().schema_hash
    files = _artifacts(client, run.info.run_id)
    assert {"plots/equity.png", "plots/drawdown.png", "plots/costs_ml.png", "eval/folds.csv", "eval/trades/ml.csv",
            "eval/slo_events.json", "eval/fold_models.csv"} <= files
    assert "model/ml_strategy.joblib" in files

    # The saved model evaluates as is on features of the same schema ...
    model = client.download_artifacts(run.info.run_id, "model/ml_strategy.joblib", str(tmp_path))
    again = subprocess.run([sys.executable, "-m", "ai_trading.evaluate", *args, f"model_path={model}",
                            "experiment_name=pretrained"], cwd=tmp_path,
                           env={**os.environ, "MLFLOW_TRACKING_URI": uri}, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    # ... and fails fast, before any run is opened, on features of another schema.
    other = subprocess.run([sys.executable, "-m", "ai_trading.evaluate", *args, f"model_path={model}",
                            "features.features.0.horizon=2", "experiment_name=mismatch"], cwd=tmp_path,
                           env={**os.environ, "MLFLOW_TRACKING_URI": uri}, capture_output=True, text=True, timeout=600)
    assert other.returncode != 0
    assert "FeatureSchemaMismatch" in other.stderr
    assert client.get_experiment_by_name("mismatch") is None
