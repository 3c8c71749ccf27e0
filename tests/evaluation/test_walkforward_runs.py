"""The walk-forward job in MLflow: one parent run with the aggregate, a child run per fold with the fold's layout
as params and its metrics, equal to the parent's per-fold table; the same whichever backend fitted the folds."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from ai_trading.evaluate import evaluate
from ai_trading.tracking.runs import PARENT_TAG
from ai_trading.wiring import evaluate_config
from tests.conftest import compose_config

SMALL = ["data.symbols=[SP500]", "data.start=2008-01-01", "data.end=2012-12-31", "strategy=ml",
         "walkforward.n_folds=3", "walkforward.train_bars=400", "strategy.cv_splits=3",
         "walkforward.show_progress=false"]


def _exact(metrics: dict[str, float]) -> dict[str, str]:
    """Metrics compared exactly, NaN equal to NaN: each value by its exact (hex) representation."""
    return {k: float(v).hex() for k, v in metrics.items()}


def _evaluate(uri: str, experiment: str, *extra: str) -> dict[str, float]:
    config = evaluate_config(compose_config([*SMALL, f"tracking.tracking_uri={uri}", f"experiment_name={experiment}",
                                             *extra], config_name="evaluate"))
    metrics, _ = evaluate(config)
    return metrics


@pytest.mark.slow
def test_walkforward_job_logs_a_parent_run_with_a_child_per_fold(mlflow_uri: str, tmp_path: Path) -> None:
    _evaluate(mlflow_uri, "serial")
    _evaluate(mlflow_uri, "joblib", "walkforward.backend=joblib", "walkforward.n_jobs=2")
    client = MlflowClient(tracking_uri=mlflow_uri)
    layouts = {}
    for name in ("serial", "joblib"):
        experiment = client.get_experiment_by_name(name)
        assert experiment is not None
        runs = client.search_runs([experiment.experiment_id])
        (parent,) = [r for r in runs if PARENT_TAG not in r.data.tags]
        children = sorted((r for r in runs if r.data.tags.get(PARENT_TAG) == parent.info.run_id),
                          key=lambda r: int(r.data.params["fold.index"]))
        assert len(runs) == 4 and len(children) == 3
        assert all(c.info.status == "FINISHED" and c.data.tags["role"] == "fold" for c in children)
        assert [c.info.run_name for c in children] == [f"{parent.info.run_name}__fold{k}" for k in range(3)]
        # The aggregate stays on the parent; the fold metrics are on the children only.
        assert "eval/ml/net/sharpe" in parent.data.metrics and "fold/train_samples" not in parent.data.metrics
        folds = pd.read_csv(io.StringIO(Path(client.download_artifacts(parent.info.run_id, "eval/folds.csv",
                                                                        str(tmp_path / name))).read_text()))
        for child in children:
            k = int(child.data.params["fold.index"])
            assert int(child.data.params["fold.seed"]) == 0 + k  # the job's seed (0) plus the fold index
            assert child.data.params["fold.backend"] == name
            for strategy in ("ml", "buy_and_hold", "cash", "trend"):
                row = folds[(folds["name"] == strategy) & (folds["fold"] == k)].iloc[0]
                for metric in ("total_return", "sharpe", "turnover", "cost_total"):
                    assert child.data.metrics[f"eval/{strategy}/net/{metric}"] == row[f"net_{metric}"]
            assert child.data.metrics["fold/train_samples"] > 100
        layouts[name] = (parent.data.metrics, [(c.data.params, {k: v for k, v in c.data.metrics.items()
                                                                 if k != "fold/fit_seconds"}) for c in children])
    # Joblib-fitted folds log the serial job's numbers exactly (timing and the backend's name aside).
    serial_parent, serial_children = layouts["serial"]
    joblib_parent, joblib_children = layouts["joblib"]
    assert _exact({k: v for k, v in joblib_parent.items() if "elapsed" not in k}) == _exact(
        {k: v for k, v in serial_parent.items() if "elapsed" not in k})
    for (sp, sm), (jp, jm) in zip(serial_children, joblib_children, strict=True):
        assert _exact(sm) == _exact(jm)
        assert {k: v for k, v in sp.items() if k != "fold.backend"} == {k: v for k, v in jp.items()
                                                                           if k != "fold.backend"}
