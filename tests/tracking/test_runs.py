"""The tracking module against real MLflow stores: SQLite in a temp dir, and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from ai_trading.errors import ConfigError
from ai_trading.tracking import TrackingConfig, flatten, git_state, start_run

CONFIG = {"data": {"symbols": ["SP500", "NASDAQ"], "start": None}, "seed": 3, "algo": {"name": "ppo", "lr": 3e-4}}


def _log_one_run(uri: str) -> str:
    tags = {"feature_schema_hash": "a" * 64, "dataset_fingerprint": "b" * 64}
    with start_run(TrackingConfig(uri, "exp"), run_name="exp__ppo__seed3", resolved_config=CONFIG,
                   overrides=["seed=3", "algo=ppo"], tags=tags) as run:
        run.log_metrics({"eval/sharpe": 1.25, "pnl/net": -3.5}, step=2)
        return run.run_id


def _assert_run_complete(uri: str, run_id: str) -> None:
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "exp__ppo__seed3"
    assert run.data.tags["feature_schema_hash"] == "a" * 64
    assert run.data.tags["dataset_fingerprint"] == "b" * 64
    assert run.data.tags["hydra_overrides"] == "seed=3 algo=ppo"
    assert run.data.tags["git_commit"] == git_state().commit
    assert run.data.tags["git_dirty"] in ("true", "false")
    assert run.data.params["data.symbols"] == '["SP500", "NASDAQ"]'
    assert run.data.params["algo.lr"] == "0.0003"
    assert run.data.metrics == {"eval/sharpe": 1.25, "pnl/net": -3.5}
    artifacts = {a.path for a in client.list_artifacts(run_id, "config")}
    assert artifacts == {"config/resolved.yaml", "config/overrides.txt"}


def test_start_run_sqlite_store_records_provenance(mlflow_uri: str) -> None:
    _assert_run_complete(mlflow_uri, _log_one_run(mlflow_uri))


def test_start_run_marks_failed_when_block_raises(mlflow_uri: str) -> None:
    with pytest.raises(RuntimeError, match="boom"), start_run(
        TrackingConfig(mlflow_uri, "exp"), run_name="r", resolved_config={"a": 1}
    ) as run:
        run_id = run.run_id
        raise RuntimeError("boom")
    assert MlflowClient(tracking_uri=mlflow_uri).get_run(run_id).info.status == "FAILED"


def test_start_run_failed_run_records_error_type_message_and_artifact(mlflow_uri: str, tmp_path: Path) -> None:
    """A FAILED run says why in the UI: the error's type and (masked) message as tags and in error.txt."""
    with pytest.raises(ConfigError), start_run(
        TrackingConfig(mlflow_uri, "exp"), run_name="r", resolved_config={"a": 1}
    ) as run:
        run_id = run.run_id
        raise ConfigError("algo.hyperparams.n_steps=0 broke at learn time; dsn postgresql://u:pw9@h/db")
    client = MlflowClient(tracking_uri=mlflow_uri)
    failed = client.get_run(run_id)
    assert failed.info.status == "FAILED"
    assert failed.data.tags["error_type"] == "ConfigError"
    assert failed.data.tags["error_message"].startswith("algo.hyperparams.n_steps=0 broke at learn time")
    assert "pw9" not in failed.data.tags["error_message"]
    text = Path(client.download_artifacts(run_id, "error.txt", str(tmp_path))).read_text()
    assert text.startswith("ConfigError: algo.hyperparams.n_steps=0 broke at learn time")
    assert "pw9" not in text


def test_flatten_nests_dotted_keys_and_serialises_lists() -> None:
    assert flatten({"a": {"b": {"c": 1}, "d": [1, "x"]}, "e": None, "f": "s"}) == {
        "a.b.c": "1", "a.d": '[1, "x"]', "e": "null", "f": "s",
    }


def test_start_run_logs_more_params_than_one_batch(mlflow_uri: str) -> None:
    wide = {f"p{i}": i for i in range(250)}
    with start_run(TrackingConfig(mlflow_uri, "exp"), run_name="wide", resolved_config=wide) as run:
        run_id = run.run_id
    assert len(MlflowClient(tracking_uri=mlflow_uri).get_run(run_id).data.params) == 250


@pytest.mark.postgres
def test_start_run_postgres_backend_store_records_provenance(postgres_database: str) -> None:
    """MLflow at scale: a PostgreSQL backend store through psycopg 3."""
    _assert_run_complete(postgres_database, _log_one_run(postgres_database))
