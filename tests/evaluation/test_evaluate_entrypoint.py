"""Subprocess smoke test of the evaluation entrypoint: metrics of strategy and baselines, provenance tags,
CSVs and PNG plots land in MLflow; the table is printed. A saved model evaluates as is after its training
span, fails fast (no run) on a window overlapping it or on features or costs other than its signed manifest's,
and with allow_in_sample=true runs with every metric labelled in-sample."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
from mlflow.tracking import MlflowClient

from ai_trading.artifacts import Expectations, SigningConfig, load_model
from ai_trading.data import DataConfig, load
from ai_trading.features import FeatureBuilder


def _artifacts(client: MlflowClient, run_id: str, path: str = "") -> set[str]:
    out: set[str] = set()
    for item in client.list_artifacts(run_id, path or None):
        out |= _artifacts(client, run_id, item.path) if item.is_dir else {item.path}
    return out


def _job_runs(client: MlflowClient, experiment_id: str) -> list:  # type: ignore[type-arg]
    """The jobs' runs, without the child run each walk-forward fold nests under its job's run."""
    return [r for r in client.search_runs([experiment_id]) if r.data.tags.get("role") != "fold"]


def test_evaluate_entrypoint_logs_strategy_baselines_provenance_and_plots(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    dates = ["data.start=2008-01-01", "data.end=2012-12-31"]
    common = ["data.symbols=[SP500]", "strategy=ml", "walkforward.n_folds=2", "walkforward.train_bars=400",
              "strategy.cv_splits=3"]
    args = [*common, *dates]
    result = subprocess.run([sys.executable, "-m", "ai_trading.evaluate", *args], cwd=tmp_path,
                            env={**os.environ, "MLFLOW_TRACKING_URI": uri}, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    for name in ("ml", "buy_and_hold", "cash", "trend"):
        assert name in result.stdout
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("evaluate")
    assert experiment is not None
    (run,) = _job_runs(client, experiment.experiment_id)
    assert run.info.status == "FINISHED"
    metrics = run.data.metrics
    for name in ("ml", "buy_and_hold", "cash", "trend"):
        for kind in ("net", "gross"):
            assert f"eval/{name}/{kind}/total_return" in metrics
    assert metrics["eval/ml/net/total_return"] < metrics["eval/ml/gross/total_return"]
    # cash pays no costs and only earns the risk-free rate
    assert metrics["eval/cash/net/total_return"] == metrics["eval/cash/gross/total_return"] > 0.0
    assert metrics["eval/cash/net/financing_total"] > 0.0
    expected = load(DataConfig(symbols=["SP500"], start="2008-01-01", end="2012-12-31"))
    assert run.data.tags["dataset_fingerprint"] == expected.fingerprint
    assert run.data.tags["feature_schema_hash"] == FeatureBuilder.default().schema_hash
    files = _artifacts(client, run.info.run_id)
    assert {"plots/equity.png", "plots/drawdown.png", "plots/costs_ml.png", "eval/folds.csv", "eval/trades/ml.csv",
            "eval/slo_events.json", "eval/fold_models.csv"} <= files
    # The fitted model: an MLflow pyfunc directory with its manifest signed over every file (MLmodel included).
    assert {"model/MLmodel", "model/manifest.json", "model/manifest.sig",
            "model/data/files/ml_strategy.joblib"} <= files

    assert run.data.tags["in_sample"] == "false"

    def evaluate(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "ai_trading.evaluate", *common, *extra],
                              cwd=tmp_path, env={**os.environ, "MLFLOW_TRACKING_URI": uri}, capture_output=True,
                              text=True, timeout=600)

    # The saved model (the last fold's) was trained on labels inside this run's out-of-sample span: evaluating
    # it on the same data fails fast, naming both ranges, before any run is opened ...
    model = client.download_artifacts(run.info.run_id, "model", str(tmp_path))
    span = load_model(model, SigningConfig.default(), Expectations(None, None, None, kind="ml")).model.train_span
    overlap = evaluate(*dates, f"model_path={model}", "experiment_name=overlap")
    assert overlap.returncode != 0
    assert "InSampleEvaluationError" in overlap.stderr and str(span[0]) in overlap.stderr
    assert client.get_experiment_by_name("overlap") is None
    # ... runs with allow_in_sample=true, every metric and the run labelled in-sample ...
    insample = evaluate(*dates, f"model_path={model}", "allow_in_sample=true", "experiment_name=in_sample")
    assert insample.returncode == 0, insample.stderr[-3000:]
    logged = insample.stdout + insample.stderr
    assert "WARNING" in logged and "in-sample evaluation model=ml" in logged
    exp = client.get_experiment_by_name("in_sample")
    assert exp is not None
    (labelled,) = _job_runs(client, exp.experiment_id)
    assert labelled.data.tags["in_sample"] == "true"
    evaluated = [k for k in labelled.data.metrics if not k.startswith("data/")]  # data/: the input's quality
    assert evaluated and all(k.startswith("in_sample/") for k in evaluated)
    assert "in_sample/ml/net/sharpe" in labelled.data.metrics
    # ... evaluates as is on a window after its training span ...
    after = (span[1] + pd.Timedelta(days=1)).date()
    later = [f"data.start={after}", f"data.end={(span[1] + pd.Timedelta(days=3 * 365)).date()}"]
    clean = evaluate(f"model_path={model}", *later, "experiment_name=pretrained")
    assert clean.returncode == 0, clean.stderr[-3000:]
    exp = client.get_experiment_by_name("pretrained")
    assert exp is not None
    (oos,) = _job_runs(client, exp.experiment_id)
    assert oos.data.tags["in_sample"] == "false" and "eval/ml/net/sharpe" in oos.data.metrics
    # ... and fails fast, before any run is opened, on features of another schema or another cost model.
    other = evaluate(f"model_path={model}", *later, "features.features.0.horizon=2", "experiment_name=mismatch")
    assert other.returncode != 0
    assert "ProvenanceMismatch" in other.stderr and "feature_schema_hash" in other.stderr
    assert client.get_experiment_by_name("mismatch") is None
    costs = evaluate(f"model_path={model}", *later, "simulator=stressed", "experiment_name=cost_mismatch")
    assert costs.returncode != 0
    assert "ProvenanceMismatch" in costs.stderr and "cost_model_hash" in costs.stderr
    assert client.get_experiment_by_name("cost_mismatch") is None


def test_evaluate_headline_is_the_strategys_own_sharpe_also_for_a_baseline_named_strategy(mlflow_uri: str) -> None:
    from ai_trading.artifacts.keys import ai_trading_home
    from ai_trading.evaluate import evaluate
    from ai_trading.wiring import evaluate_config
    from tests.conftest import compose_config

    # A production host (dev keys refused, no signing key set) evaluates a rule that fits nothing: nothing is
    # signed, so no key is needed and none is made.
    config = evaluate_config(compose_config(
        ["strategy=trend", "data.symbols=[SP500]", "data.start=2008-01-01", "data.end=2012-12-31",
         "walkforward.n_folds=2", "walkforward.train_bars=400", "walkforward.show_progress=false",
         "signing.refuse_dev_keys=true", f"tracking.tracking_uri={mlflow_uri}"], config_name="evaluate"))
    metrics, headline = evaluate(config)
    assert headline == "eval/trend/net/sharpe"
    assert math.isfinite(metrics[headline])
    assert not (ai_trading_home() / "keys").exists()
