"""The sweep's parent run and end-of-sweep summary: the Hydra callback against a real MLflow store, a real
tiny multirun with a failing job, and output folders that stay apart."""

from __future__ import annotations

import io
import json
import logging
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.utils import JobReturn, JobStatus
from hydra.types import RunMode
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf

from ai_trading import sweep
from ai_trading.errors import ConfigError
from ai_trading.paths import CONF_DIR
from ai_trading.sweep import SweepSummary, sweep_id_of
from ai_trading.tracking import TrackingConfig, start_run
from ai_trading.tracking.runs import EXPERIMENT_KIND_TAG, MODEL_TRAINING_KIND, child_runs, sweep_parent
from ai_trading.wiring import expected_provenance
from tests.conftest import compose_config

SWEEP_DIR = "multirun/exp/2026-01-02_03-04-05_000006"
# The provenance tags a training job of the default config leaves on its run.
_EXPECTED = expected_provenance(compose_config())
PROVENANCE = {"feature_schema_hash": _EXPECTED.feature_schema_hash, "cost_model_hash": _EXPECTED.cost_model_hash}


def _metrics(rl: float, buy_and_hold: float, trend: float) -> dict[str, float]:
    out: dict[str, float] = {}
    for strategy, sharpe in (("rl", rl), ("buy_and_hold", buy_and_hold), ("trend", trend)):
        out.update({f"eval/{strategy}/net/sharpe": sharpe, f"eval/{strategy}/net/total_return": sharpe / 10,
                    f"eval/{strategy}/net/max_drawdown": 0.1, f"eval/{strategy}/net/turnover": 2.0,
                    f"eval/{strategy}/net/periods_per_year": 252.0})
    return out


def _equity_csv() -> str:
    index = pd.date_range("2020-01-01", periods=5, tz="UTC", name="timestamp")
    frame = pd.DataFrame({f"{s}/{k}": [1e6 * (1 + 0.01 * i) for i in range(5)]
                          for s in ("rl", "buy_and_hold", "cash", "trend") for k in ("net", "gross")}, index=index)
    return frame.to_csv(index_label="timestamp")


def _config(tmp_path: Path, uri: str, overrides: list[str], seed: int | None = None) -> DictConfig:
    return OmegaConf.create({"experiment_name": "exp", "seed": seed, "tracking": {"tracking_uri": uri},
                             "algo": {"name": "ppo"},
                             "governance": OmegaConf.load(CONF_DIR / "governance" / "default.yaml"),
                             "signing": OmegaConf.load(CONF_DIR / "signing" / "default.yaml"),
                             "features": OmegaConf.load(CONF_DIR / "features" / "default_daily.yaml"),
                             "simulator": OmegaConf.load(CONF_DIR / "simulator" / "default.yaml"),
                             "cost_model": OmegaConf.load(CONF_DIR / "cost_model" / "ewma.yaml"),
                             "hydra": {"mode": RunMode.MULTIRUN, "sweep": {"dir": str(tmp_path / SWEEP_DIR)},
                                       "overrides": {"task": overrides}}})


def _finished_seed(tracking: TrackingConfig, parent: str, sweep_id: str, seed: int, sharpe: float) -> str:
    with start_run(tracking, run_name=f"exp__ppo__seed{seed}", resolved_config={}, overrides=[f"seed={seed}"],
                   tags={"sweep_id": sweep_id, "seed": seed, **PROVENANCE}, parent_run_id=parent) as run:
        run.log_metrics(_metrics(sharpe, 0.568, 0.654))
        run.log_text(_equity_csv(), "eval/equity.csv")
        return run.run_id


def test_sweep_end_summarises_finished_seeds_and_lists_failed_ones_on_the_parent(
        tmp_path: Path, mlflow_uri: str, caplog: pytest.LogCaptureFixture) -> None:
    callback = SweepSummary()
    callback.on_multirun_start(_config(tmp_path, mlflow_uri, ["seed=0,1,2,3"]))
    tracking = TrackingConfig(mlflow_uri, "exp")
    sweep_id = sweep_id_of(tmp_path / SWEEP_DIR)
    parent = sweep_parent(tracking, sweep_id)
    assert parent is not None
    _finished_seed(tracking, parent, sweep_id, 0, 0.9)
    _finished_seed(tracking, parent, sweep_id, 1, 0.5)
    # Seed 2 fails inside its run (the run records the error), seed 3 before opening one.
    with pytest.raises(RuntimeError), start_run(tracking, run_name="exp__ppo__seed2", resolved_config={},
                                                overrides=["seed=2"], tags={"sweep_id": sweep_id, "seed": 2},
                                                parent_run_id=parent):
        raise RuntimeError("boom in training")
    for seed, error in ((2, RuntimeError("boom in training")), (3, ConfigError("data.start: not a date"))):
        job = _config(tmp_path, mlflow_uri, [f"seed={seed}"], seed=seed)
        callback.on_job_start(job)
        callback.on_job_end(job, JobReturn(overrides=[f"seed={seed}"], status=JobStatus.FAILED, _return_value=error))
    with caplog.at_level(logging.INFO, logger="ai_trading.sweep"):
        callback.on_multirun_end(_config(tmp_path, mlflow_uri, ["seed=0,1,2,3"]))

    client = MlflowClient(tracking_uri=mlflow_uri)
    run = client.get_run(parent)
    assert run.info.status == "FINISHED"
    assert run.data.tags["sweep_role"] == "parent" and run.info.run_name == "exp__ppo__sweep"
    children = {c.name: c for c in child_runs(tracking, parent)}
    assert sorted(children) == ["exp__ppo__seed0", "exp__ppo__seed1", "exp__ppo__seed2", "exp__ppo__seed3"]
    assert children["exp__ppo__seed3"].status == "FAILED"
    assert children["exp__ppo__seed3"].tags["error_type"] == "ConfigError"
    metrics = run.data.metrics
    assert metrics["summary/seeds_finished"] == 2 and metrics["summary/seeds_failed"] == 2
    assert metrics["summary/net_sharpe"] == pytest.approx(0.7)
    assert metrics["summary/seeds_beating_buy_and_hold"] == 1 and metrics["summary/seeds_beating_trend"] == 1
    artifacts = {a.path for folder in ("summary", "plots") for a in client.list_artifacts(parent, folder)}
    assert artifacts == {"summary/table.csv", "summary/summary.txt", "plots/equity_seeds.png",
                         "plots/sharpe_seeds.png"}
    table = pd.read_csv(io.StringIO(Path(client.download_artifacts(parent, "summary/table.csv")).read_text()))
    assert list(table["status"]) == ["FINISHED", "FINISHED", "FAILED", "FAILED"]
    assert table["error"][3] == "ConfigError: data.start: not a date"
    printed = caplog.text
    assert "2 of 4 seeds finished" in printed
    assert "seed2 FAILED (run exp__ppo__seed2): RuntimeError: boom in training" in printed
    assert "seed3 FAILED (run exp__ppo__seed3): ConfigError: data.start: not a date" in printed
    experiment = client.get_experiment_by_name("exp")
    assert experiment is not None and experiment.tags[EXPERIMENT_KIND_TAG] == MODEL_TRAINING_KIND
    # Governance after the summary: two of four seeds finished, below the five required; nothing registered.
    assert run.data.tags["governance.passed"] == "false" and run.data.tags["governance.best_run_id"] == children[
        "exp__ppo__seed0"].run_id
    decision = json.loads(Path(client.download_artifacts(parent, "governance/decision.json")).read_text())
    assert decision["n_seeds"] == 4 and decision["n_finished"] == 2 and decision["n_trials"] == 4
    assert decision["reasons"][0] == "2 of 4 seeds finished, below the 5 minimum (failed: seed 2 FAILED, seed 3 FAILED)"
    event = json.loads(Path(client.download_artifacts(parent, "governance/event.json")).read_text())
    assert event["kind"] == "governance_failed" and event["reasons"] == decision["reasons"]
    assert metrics["governance/passed"] == 0.0 and metrics["governance/seeds_finished"] == 2
    assert "governance exp__2026-01-02_03-04-05_000006: REJECTED" in printed
    for criterion in decision["criteria"]:
        assert criterion["name"] in printed


def test_a_passing_sweep_hands_its_best_seed_to_register_best_model(
        tmp_path: Path, mlflow_uri: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    registered: list[tuple[TrackingConfig, str, dict[str, Any]]] = []
    monkeypatch.setattr(sweep, "register_best_model", lambda tracking, signing, expected, run_id, decision:
                        registered.append((tracking, run_id, decision)))
    callback = SweepSummary()
    callback.on_multirun_start(_config(tmp_path, mlflow_uri, ["seed=0,1,2,3,4"]))
    tracking = TrackingConfig(mlflow_uri, "exp")
    sweep_id = sweep_id_of(tmp_path / SWEEP_DIR)
    parent = sweep_parent(tracking, sweep_id)
    assert parent is not None
    ids = [_finished_seed(tracking, parent, sweep_id, seed, sharpe)
           for seed, sharpe in enumerate((0.9, 1.0, 1.1, 0.95, 1.05))]
    with caplog.at_level(logging.INFO, logger="ai_trading.sweep"):
        callback.on_multirun_end(_config(tmp_path, mlflow_uri, ["seed=0,1,2,3,4"]))
    ((where, run_id, decision),) = registered
    assert where == tracking and run_id == ids[2] and decision["passed"] is True and decision["best_seed"] == 2
    run = MlflowClient(tracking_uri=mlflow_uri).get_run(parent)
    assert run.data.tags["governance.passed"] == "true" and run.data.tags["governance.best_run_id"] == ids[2]
    assert f"governance {sweep_id}: PASSED" in caplog.text


def test_sweep_end_reports_a_governance_error_without_failing_the_sweep(
        tmp_path: Path, mlflow_uri: str, caplog: pytest.LogCaptureFixture) -> None:
    """A finished seed whose held-out equity has no return (it reaches zero): the summary is logged, the
    decision cannot be made and says why in the log and on the parent, and the parent still closes FINISHED."""
    callback = SweepSummary()
    callback.on_multirun_start(_config(tmp_path, mlflow_uri, ["seed=0"]))
    tracking = TrackingConfig(mlflow_uri, "exp")
    sweep_id = sweep_id_of(tmp_path / SWEEP_DIR)
    parent = sweep_parent(tracking, sweep_id)
    assert parent is not None
    equity = pd.read_csv(io.StringIO(_equity_csv()), index_col="timestamp")
    equity.iloc[2, equity.columns.get_loc("rl/net")] = 0.0
    with start_run(tracking, run_name="exp__ppo__seed0", resolved_config={}, overrides=["seed=0"],
                   tags={"sweep_id": sweep_id, "seed": 0, **PROVENANCE}, parent_run_id=parent) as run:
        run.log_metrics(_metrics(0.9, 0.568, 0.654))
        run.log_text(equity.to_csv(index_label="timestamp"), "eval/equity.csv")
    with caplog.at_level(logging.INFO, logger="ai_trading.sweep"):
        callback.on_multirun_end(_config(tmp_path, mlflow_uri, ["seed=0"]))
    client = MlflowClient(tracking_uri=mlflow_uri)
    record = client.get_run(parent)
    assert record.info.status == "FINISHED" and record.data.metrics["summary/seeds_finished"] == 1
    error = record.data.tags["governance.error"]
    assert error.startswith(f"EvaluationError: run {run.run_id} (exp__ppo__seed0): cannot read its eval/equity.csv")
    assert "EvaluationError: equity: non-positive value" in error and "at position 2" in error
    assert f"governance of sweep {sweep_id} did not complete: EvaluationError" in caplog.text
    assert "governance.passed" not in record.data.tags


def test_a_bad_governance_threshold_fails_the_sweep_before_any_seed(tmp_path: Path, mlflow_uri: str) -> None:
    config = _config(tmp_path, mlflow_uri, ["seed=0"])
    config.governance.min_seeds = 0
    with pytest.raises(ConfigError, match=r"governance\.min_seeds=0"):
        SweepSummary().on_multirun_start(config)
    assert sweep_parent(TrackingConfig(mlflow_uri, "exp"), sweep_id_of(tmp_path / SWEEP_DIR)) is None


def test_sweep_ended_by_a_job_exiting_still_summarises_and_closes_the_parent_failed(
        tmp_path: Path, mlflow_uri: str) -> None:
    """A typed error ends the process (SystemExit): Hydra calls neither on_job_end nor on_multirun_end, and
    the end registered at exit runs instead."""
    callback = SweepSummary()
    callback.on_multirun_start(_config(tmp_path, mlflow_uri, ["seed=-1"]))
    callback.on_job_start(_config(tmp_path, mlflow_uri, ["seed=-1"], seed=-1))
    callback._finish()  # what atexit calls
    tracking = TrackingConfig(mlflow_uri, "exp")
    parent = sweep_parent(tracking, sweep_id_of(tmp_path / SWEEP_DIR))
    assert parent is not None
    assert MlflowClient(tracking_uri=mlflow_uri).get_run(parent).info.status == "FAILED"  # no seed finished
    (child,) = child_runs(tracking, parent)
    assert child.status == "FAILED" and child.tags["error_type"] == "SystemExit"
    callback._finish()  # a second call (on_multirun_end after the exit handler, or the reverse) does nothing
    assert len(child_runs(tracking, parent)) == 1


def test_output_folders_of_jobs_started_in_the_same_second_differ() -> None:
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        first, second = (compose(config_name="train", return_hydra_config=True) for _ in range(2))
        dirs = [(str(c.hydra.run.dir), str(c.hydra.sweep.dir)) for c in (first, second)]
    assert dirs[0][0] != dirs[1][0]
    assert dirs[0][1] != dirs[1][1]
    assert dirs[0][0].startswith("outputs/ai_trading/")


TINY = ["data.symbols=[SP500,NVDA]", "data.start=2005-01-01", "data.end=2012-12-31", "algo.progress_bar=false",
        "algo.eval_every=0", "algo.n_envs=8", "algo.total_timesteps=1024", "algo.hyperparams.n_steps=64",
        "algo.hyperparams.batch_size=256"]


def test_train_sweep_with_a_failing_job_nests_seeds_under_a_parent_with_the_summary(tmp_path: Path) -> None:
    """A real multirun: seed -1 is rejected by the config (one line, no traceback), the seeds after it still
    train, and the sweep exits non-zero."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = subprocess.run([sys.executable, "-m", "ai_trading.train", "-m", "seed=-1,0,1", *TINY], cwd=tmp_path,
                            env={**os.environ, "MLFLOW_TRACKING_URI": uri}, capture_output=True, text=True,
                            timeout=900)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("ai_trading")
    assert experiment is not None, output[-3000:]
    assert experiment.tags[EXPERIMENT_KIND_TAG] == MODEL_TRAINING_KIND
    assert "mlflow.sharedViewState.headline" in experiment.tags
    runs = client.search_runs([experiment.experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("sweep_role") == "parent"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(runs) == 4 and len(children) == 3
    assert parent.info.run_name.startswith("ai_trading__ppo__sweep__symbols=SP500,NVDA_start=2005-01-01")
    finished = sorted((r for r in children if r.info.status == "FINISHED"), key=lambda r: r.info.run_name)
    assert [r.data.tags["seed"] for r in finished] == ["0", "1"]
    for run in finished:
        seed = run.data.tags["seed"]
        assert run.info.run_name.startswith(f"ai_trading__ppo__seed{seed}__symbols=SP500,NVDA_start=2005-01-01")
        assert "- `data.symbols=[SP500,NVDA]`" in run.data.tags["mlflow.note.content"]
        sharpe = run.data.metrics["eval/rl/net/sharpe"]
        assert run.data.metrics["summary/net_sharpe"] == sharpe or math.isnan(sharpe)
        assert run.data.metrics["summary/excess_return_vs_buy_and_hold"] == pytest.approx(
            run.data.metrics["eval/rl/net/total_return"] - run.data.metrics["eval/buy_and_hold/net/total_return"])
    (failed,) = [r for r in children if r.info.status == "FAILED"]
    assert failed.data.tags["seed"] == "-1" and failed.data.tags["error_type"] == "ConfigError"
    assert "Traceback" not in result.stderr
    assert "error: [ConfigError] seed=-1: must be an integer in [0, 2**32)" in result.stderr
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["summary/seeds_finished"] == 2 and parent.data.metrics["summary/seeds_failed"] == 1
    assert parent.data.metrics["summary/net_sharpe"] == pytest.approx(
        sum(r.data.metrics["eval/rl/net/sharpe"] for r in finished) / 2)
    artifacts = {a.path for folder in ("summary", "plots") for a in client.list_artifacts(parent.info.run_id, folder)}
    assert {"summary/table.csv", "summary/summary.txt", "plots/equity_seeds.png", "plots/sharpe_seeds.png"} <= artifacts
    assert "2 of 3 seeds finished" in output
    assert "\nseed0 " in output and "\nseed1 " in output and "FAILED (run ai_trading__ppo__" in output
    # The promotion decision after the summary: printed with every criterion, logged to the parent; two
    # finished seeds are fewer than the five required, so it is rejected and nothing is registered.
    decision = json.loads(Path(client.download_artifacts(parent.info.run_id, "governance/decision.json")).read_text())
    assert decision["passed"] is False and decision["n_finished"] == 2 and decision["n_trials"] == 3
    assert "2 of 3 seeds finished, below the 5 minimum (failed: seed -1 FAILED)" in decision["reasons"]
    assert parent.data.tags["governance.passed"] == "false"
    assert ": REJECTED (" in output and "governance_failed sweep_id=" in output
    for criterion in decision["criteria"]:
        line = next(x for x in output.splitlines() if x.startswith(criterion["name"] + " "))
        assert line.rstrip().endswith("pass" if criterion["passed"] else "FAIL")
