"""Sweeps on real cluster engines, started by the tests on loopback: a Ray head with Hydra's Ray launcher,
submitit's local executor through the SLURM launcher's code path, and an MLflow tracking server on a
PostgreSQL backend store with a served artifact root. Each sweep is two seeds of a tiny training budget."""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from mlflow.tracking import MlflowClient

from ai_trading.artifacts import Expectations, SigningConfig, load_model
from ai_trading.tracking import TrackingConfig
from ai_trading.tracking.runs import PARENT_TAG

TINY = ["data.symbols=[SP500,NVDA]", "data.start=2005-01-01", "data.end=2012-12-31", "algo.progress_bar=false",
        "algo.eval_every=0", "algo.n_envs=8", "algo.total_timesteps=1024", "algo.hyperparams.n_steps=64",
        "algo.hyperparams.batch_size=256", "torch_threads=1"]
BIN = Path(sys.executable).parent
RAY_TOKEN = secrets.token_hex(32)
HAS_RAY_LAUNCHER = importlib.util.find_spec("hydra_plugins.hydra_ray_launcher") is not None and \
    importlib.util.find_spec("ray") is not None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _sweep(tmp_path: Path, uri: str, *args: str, env: dict[str, str] | None = None
           ) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "ai_trading.train", "-m", "seed=0,1", *TINY, *args], cwd=tmp_path,
                            env={**os.environ, "MLFLOW_TRACKING_URI": uri, **(env or {})}, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    return result


def _sweep_runs(uri: str) -> tuple[object, list]:  # type: ignore[type-arg]
    """The sweep's parent run and its two seeds' runs, each FINISHED."""
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("ai_trading")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("sweep_role") == "parent"]
    seeds = sorted((r for r in runs if r.data.tags.get(PARENT_TAG) == parent.info.run_id),
                   key=lambda r: r.data.tags["seed"])
    assert [r.data.tags["seed"] for r in seeds] == ["0", "1"], [r.info.run_name for r in runs]
    assert all(r.info.status == "FINISHED" for r in [parent, *seeds]), [r.info.status for r in runs]
    for run in seeds:
        assert "eval/rl/net/sharpe" in run.data.metrics and "train/timesteps" in run.data.metrics
    assert parent.data.metrics["summary/seeds_finished"] == 2
    return parent, seeds


@pytest.fixture
def ray_temp() -> Iterator[Path]:
    """Ray's session folder: short, since its sockets' paths must fit AF_UNIX's 107 bytes."""
    path = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _ray_env() -> dict[str, str]:
    """Ray's token authentication, as a real cluster runs it: the head and every driver share the token."""
    return {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": RAY_TOKEN}


@pytest.fixture
def ray_head(ray_temp: Path) -> Iterator[str]:
    """A Ray head on 127.0.0.1 with two CPUs, stopped afterwards."""
    port = _free_port()
    env = {**os.environ, **_ray_env()}
    started = subprocess.run([str(BIN / "ray"), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
                              "--include-dashboard=false", "--num-cpus=2", "--disable-usage-stats",
                              f"--temp-dir={ray_temp}"],
                             env=env, capture_output=True, text=True, timeout=180)
    assert started.returncode == 0, (started.stdout + started.stderr)[-3000:]
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([str(BIN / "ray"), "stop", "--force"], env=env, capture_output=True, timeout=120)


@pytest.mark.slow
@pytest.mark.skipif(not HAS_RAY_LAUNCHER, reason="needs the optional [ray] extra (hydra-ray-launcher and ray): "
                    "pip install -e '.[ray]'")
@pytest.mark.xdist_group("ray")  # its teardown (`ray stop --force`) stops every Ray process on the machine
def test_ray_cluster_launcher_runs_both_seeds_on_ray_workers(tmp_path: Path, ray_head: str,
                                                              ray_temp: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    _sweep(tmp_path, uri, "hydra/launcher=ray_cluster", f"hydra.launcher.ray.init.address={ray_head}",
           "hydra.launcher.ray.remote.num_cpus=1", env={"RAY_ADDRESS": ray_head, **_ray_env()})
    _, seeds = _sweep_runs(uri)
    # Each seed ran in a Ray worker process, not in the sweep's own process: its job recorded the worker.
    ray_logs = list(ray_temp.rglob("worker-*.out"))
    assert ray_logs, "no Ray worker ran"
    worker_output = "".join(p.read_text(errors="replace") for p in ray_logs)
    for run in seeds:
        assert run.info.run_id in worker_output or run.info.run_name in worker_output


@pytest.mark.slow
def test_slurm_launcher_code_path_runs_both_seeds_through_submitit_local(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    _sweep(tmp_path, uri, "hydra/launcher=slurm_local")
    _, seeds = _sweep_runs(uri)
    # submitit wrote each job's pickled call and its logs under the sweep folder: the jobs ran through it.
    submitted = list(tmp_path.rglob(".submitit/*/*_submitted.pkl"))
    assert len(submitted) == 2, submitted
    assert len({p.parent.name for p in submitted}) == 2 and len(seeds) == 2


@pytest.fixture
def mlflow_server(tmp_path: Path, postgres_database: str) -> Iterator[tuple[str, Path]]:
    """``mlflow server`` on 127.0.0.1 with the fresh PostgreSQL database as its backend store and a local
    artifacts destination it serves; yields the server's URI and that folder."""
    port = _free_port()
    artifacts = tmp_path / "artifact_root"
    log = (tmp_path / "mlflow_server.log").open("w")
    server = subprocess.Popen([str(BIN / "mlflow"), "server", "--backend-store-uri", postgres_database,
                               "--artifacts-destination", str(artifacts), "--serve-artifacts",
                               "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                              stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if requests.get(f"{uri}/health", timeout=10).status_code == 200:
                    break
            except (requests.ConnectionError, requests.Timeout):  # not up yet, or busy starting
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"mlflow server did not come up:\n{(tmp_path / 'mlflow_server.log').read_text()}")
            time.sleep(0.5)
        yield uri, artifacts
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


@pytest.mark.slow
@pytest.mark.postgres
def test_sweep_logs_through_an_mlflow_server_on_postgres_and_models_read_back(
        tmp_path: Path, mlflow_server: tuple[str, Path]) -> None:
    uri, artifact_root = mlflow_server
    _sweep(tmp_path, uri)
    parent, seeds = _sweep_runs(uri)
    client = MlflowClient(tracking_uri=uri)
    # Tags, params and metrics are in PostgreSQL behind the server; the artifacts in its root, served over HTTP.
    for run in seeds:
        assert run.info.artifact_uri.startswith("mlflow-artifacts:")
        for tag in ("feature_schema_hash", "dataset_fingerprint", "cost_model_hash", "sweep_id",
                    "manifest_key_id"):
            assert run.data.tags[tag], tag
        assert run.data.params["seed"] == run.data.tags["seed"]
        manifest = json.loads(Path(client.download_artifacts(run.info.run_id, "model/manifest.json",
                                                             str(tmp_path / run.info.run_id))).read_text())
        assert manifest["run_id"] == run.info.run_id and manifest["kind"] == "rl"
        assert list(artifact_root.rglob(f"{run.info.run_id}/artifacts/model/manifest.json"))
        loaded = load_model(f"runs:/{run.info.run_id}/model", SigningConfig.default(), Expectations(
            run.data.tags["feature_schema_hash"], run.data.tags["cost_model_hash"],
            run.data.tags["dataset_fingerprint"], kind="rl"), tracking=TrackingConfig(uri, "ai_trading"))
        assert loaded.manifest.run_id == run.info.run_id
    # The sweep's end read every seed's equity back through the server for its plots.
    summary = {a.path for folder in ("summary", "plots") for a in client.list_artifacts(parent.info.run_id, folder)}
    assert {"summary/table.csv", "plots/equity_seeds.png", "plots/sharpe_seeds.png"} <= summary


AT_EXIT = """
import atexit, sys
from mlflow.tracking import MlflowClient
from ai_trading.tracking import TrackingConfig
from ai_trading.tracking.runs import read_artifact_text

uri = sys.argv[1]
client = MlflowClient(tracking_uri=uri)
run = client.create_run(client.create_experiment("exit"))
client.log_text(run.info.run_id, "timestamp,rl/net\\n2020-01-01,1.0\\n", "eval/equity.csv")
config = TrackingConfig(uri, "exit")
atexit.register(lambda: print("read at exit:", read_artifact_text(config, run.info.run_id, "eval/equity.csv").split()))
"""


@pytest.mark.slow
@pytest.mark.postgres
def test_artifact_reads_through_the_server_work_at_interpreter_exit(mlflow_server: tuple[str, Path]) -> None:
    """A failed sweep's summary runs at the process's exit and reads the seeds' equity through the server then."""
    uri, _ = mlflow_server
    result = subprocess.run([sys.executable, "-c", AT_EXIT, uri], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert "read at exit: ['timestamp,rl/net', '2020-01-01,1.0']" in result.stdout
