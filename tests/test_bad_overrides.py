"""Every config mistake fails through the real entrypoint before data loads and before a run opens: exit status
2, one line ``error: [rule] message`` naming the key, no traceback, no data loading started and no MLflow store
created. (Wall time is not asserted: under a loaded machine it says nothing; ``loaded`` is the exact check.)

The table runs in one subprocess per entrypoint that calls the entrypoint's ``main`` (the ``@hydra.main``
function ``python -m`` runs) once per case with that case's command line, so the interpreter and imports are
paid once; ``build_dataset`` is wrapped there to record whether data loading ever started. Two more tests run
``python -m`` itself: the exit status, the clean line, and the traceback ``HYDRA_FULL_ERROR=1`` brings back.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ai_trading.cli import error_line
from ai_trading.errors import ConfigError, DataDefects, DataValidationError

# Each case: overrides, the rule in the error line, a fragment the message must hold (the key it names).
TRAIN_CASES: list[tuple[list[str], str, str]] = [
    (["seed=-1"], "ConfigError", "seed=-1"),
    (["signing.algorithm=rsa"], "ConfigError", "signing.algorithm='rsa'"),
    (["governance.min_seeds=0"], "ConfigError", "governance.min_seeds=0"),
    (["model_path={tmp}/no_model"], "ConfigError", "no_model'"),
    (["seed=abc"], "ConfigError", "seed='abc'"),
    (["seed=1.5"], "ConfigError", "seed=1.5"),
    (["seed=4294967296"], "ConfigError", "seed=4294967296"),
    (["torch_threads=0"], "ConfigError", "torch_threads=0"),
    (["algo.hyperparams.learning_rate=abc"], "ConfigError", "algo.hyperparams.learning_rate='abc'"),
    (["algo.hyperparams.gamma=1.5"], "ConfigError", "algo.hyperparams.gamma=1.5"),
    (["algo.hyperparams.n_steps=0"], "ConfigError", "algo.hyperparams.n_steps=0"),
    (["algo.hyperparams.batch_size=64.5"], "ConfigError", "algo.hyperparams.batch_size=64.5"),
    (["+algo.hyperparams.nsteps=64"], "ConfigError", "algo.hyperparams.nsteps=64: not a parameter of PPO"),
    (["algo=sac", "algo.hyperparams.tau=0"], "ConfigError", "algo.hyperparams.tau=0"),
    (["algo=td3", "algo.hyperparams.learning_starts=-1"], "ConfigError", "algo.hyperparams.learning_starts=-1"),
    (["algo.total_timesteps=0"], "ConfigError", "algo.total_timesteps=0"),
    (["algo.total_timesteps=-5"], "ConfigError", "algo.total_timesteps=-5"),
    (["algo.total_timesteps=abc"], "ConfigError", "algo.total_timesteps='abc'"),
    (["algo.name=foo"], "ConfigError", "algo.name='foo'"),
    (["algo.n_envs=0"], "ConfigError", "algo.n_envs=0"),
    (["algo.policy=MlpPolicyX"], "ConfigError", "algo.policy='MlpPolicyX'"),
    (["env.max_leverage=-1"], "ConfigError", "env.max_leverage=-1"),
    (["env.episode_length=abc"], "ConfigError", "env.episode_length='abc'"),
    (["simulator.participation_cap=0"], "ConfigError", "simulator.participation_cap=0"),
    (["data.start=notadate"], "bad_range", "data.start='notadate'"),
    (["data.start=2012-01-01", "data.end=2011-01-01"], "bad_range", "data.start=2012-01-01 is after"),
    (["data.symbols=[NOPE]"], "unknown_symbol", "symbol=NOPE"),
    (["data.symbols=SP500"], "ConfigError", "data.symbols='SP500': must be a list"),
    (["data=directory", "data.symbols=[X]"], "ConfigError", "data.source is required"),
    (["data=directory", "data.source={tmp}/no_such_dir", "data.symbols=[X]"], "missing_source", "no_such_dir"),
]
EVALUATE_CASES: list[tuple[list[str], str, str]] = [
    (["model_path={tmp}/nope.joblib"], "ConfigError", "nope.joblib'"),
    (["walkforward.n_folds=0"], "ConfigError", "n_folds=0"),
    (["walkforward.n_folds=abc"], "ConfigError", "walkforward.n_folds='abc'"),
    (["strategy.horizon=0"], "ConfigError", "strategy.horizon=0"),
    (["strategy.model=svm"], "ConfigError", "strategy.model='svm'"),
    (["seed=-1"], "ConfigError", "seed=-1"),
    (["data.end=notadate"], "bad_range", "data.end='notadate'"),
]

# Runs in the subprocess: argv = entrypoint module, cases json, scratch dir, results file.
DRIVER = r"""
import contextlib, io, json, os, runpy, sys, time
from pathlib import Path

import ai_trading.pipeline

module_name, cases, scratch, results_file = sys.argv[1], json.loads(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]
loads = []
original = ai_trading.pipeline.build_dataset
def recording_build_dataset(*args, **kwargs):
    loads.append(1)
    return original(*args, **kwargs)
ai_trading.pipeline.build_dataset = recording_build_dataset  # the entrypoint imports it when it runs below

def call(argv, case_dir):
    case_dir.mkdir(parents=True)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{case_dir / 'mlflow.db'}"
    sys.argv = [module_name, *argv, f"hydra.run.dir={case_dir / 'out'}"]
    err = io.StringIO()
    code = 0
    loads.clear()
    started = time.perf_counter()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            runpy.run_module(module_name, run_name="__main__", alter_sys=True)  # what `python -m` runs
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    return {"code": code, "stderr": err.getvalue(), "seconds": time.perf_counter() - started,
            "loaded": bool(loads), "store": (case_dir / "mlflow.db").exists() or (case_dir / "mlruns").exists()}

call(["--cfg", "job"], scratch / "warmup")  # pays the imports the entrypoint module does when it first runs
results = {"baseline": call(["--cfg", "job"], scratch / "baseline"), "cases": []}
for i, argv in enumerate(cases):
    results["cases"].append(call(argv, scratch / f"case{i}"))
Path(results_file).write_text(json.dumps(results))
"""

def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}", **extra}


def _table(tmp_path: Path, module: str, cases: list[tuple[list[str], str, str]]) -> dict[str, Any]:
    argvs = [[o.replace("{tmp}", str(tmp_path)) for o in overrides] for overrides, _, _ in cases]
    results = tmp_path / "results.json"
    proc = subprocess.run([sys.executable, "-c", DRIVER, module, json.dumps(argvs), str(tmp_path / "scratch"),
                           str(results)], cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    outcome: dict[str, Any] = json.loads(results.read_text())
    assert outcome["baseline"]["code"] == 0, outcome["baseline"]["stderr"][-2000:]
    return outcome


def _assert_clean_failure(result: dict[str, Any], rule: str, fragment: str, tmp: Path) -> None:
    stderr = result["stderr"]
    assert result["code"] == 2, stderr[-2000:]
    lines = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, stderr[-2000:]
    assert lines[0].startswith(f"error: [{rule}] "), lines[0]
    assert fragment.replace("{tmp}", str(tmp)) in lines[0], lines[0]
    assert "Traceback" not in stderr, stderr[-2000:]
    assert not result["loaded"], "data loading started before the mistake was caught"
    assert not result["store"], "an MLflow store was created"


@pytest.fixture(scope="module")
def train_table(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    tmp = tmp_path_factory.mktemp("train_table")
    return _table(tmp, "ai_trading.train", TRAIN_CASES), tmp


@pytest.fixture(scope="module")
def evaluate_table(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    tmp = tmp_path_factory.mktemp("evaluate_table")
    return _table(tmp, "ai_trading.evaluate", EVALUATE_CASES), tmp


@pytest.mark.parametrize(("index", "case"), list(enumerate(TRAIN_CASES)), ids=[" ".join(c[0]) for c in TRAIN_CASES])
def test_train_bad_override_fails_fast_with_one_line_and_no_run(
    train_table: tuple[dict[str, Any], Path], index: int, case: tuple[list[str], str, str]
) -> None:
    outcome, tmp = train_table
    _assert_clean_failure(outcome["cases"][index], case[1], case[2], tmp)


@pytest.mark.parametrize(("index", "case"), list(enumerate(EVALUATE_CASES)),
                         ids=[" ".join(c[0]) for c in EVALUATE_CASES])
def test_evaluate_bad_override_fails_fast_with_one_line_and_no_run(
    evaluate_table: tuple[dict[str, Any], Path], index: int, case: tuple[list[str], str, str]
) -> None:
    outcome, tmp = evaluate_table
    _assert_clean_failure(outcome["cases"][index], case[1], case[2], tmp)


def _run(tmp_path: Path, module: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", module, *args, f"hydra.run.dir={tmp_path / 'out'}"],
                          cwd=tmp_path, env=_env(tmp_path, **env), capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize(("module", "bad", "line"), [
    ("ai_trading.train", "algo.hyperparams.learning_rate=abc",
     "error: [ConfigError] algo.hyperparams.learning_rate='abc': must be a number > 0"),
    ("ai_trading.evaluate", "walkforward.n_folds=0", "error: [ConfigError] walkforward.n_folds=0"),
])
def test_entrypoint_process_bad_override_exits_2_with_one_line_or_full_traceback_on_request(
    tmp_path: Path, module: str, bad: str, line: str
) -> None:
    proc = _run(tmp_path, module, bad)
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = [text for text in proc.stderr.splitlines() if text.strip()]
    assert len(lines) == 1 and lines[0].startswith(line), proc.stderr[-3000:]
    assert not (tmp_path / "mlflow.db").exists()
    full = _run(tmp_path, module, bad, HYDRA_FULL_ERROR="1")
    assert full.returncode != 0
    assert "Traceback" in full.stderr and "ConfigError" in full.stderr
    assert not (tmp_path / "mlflow.db").exists()


def test_error_line_is_one_line_led_by_the_rule() -> None:
    wrapped = ConfigError("data: Missing mandatory value: data.source\n    full_key: data.source\n")
    assert error_line(wrapped) == ("error: [ConfigError] data: Missing mandatory value: data.source "
                                   "full_key: data.source")
    defects = DataDefects([DataValidationError("negative_volume", "volume is negative in 1 row", symbol="A"),
                           DataValidationError("unsorted", "bars must be sorted")], source="/d/A.csv")
    assert error_line(defects) == ("error: [negative_volume] 2 defects in /d/A.csv: [negative_volume] volume is "
                                   "negative in 1 row (symbol=A); [unsorted] bars must be sorted")
