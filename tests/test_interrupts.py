"""Stop signals end a real training job cleanly: the run is KILLED with the reason, nothing stays RUNNING, a
checkpoint is saved, the exit code is the shell's 128 + signal and stderr has one line, no traceback."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

TINY = ["data.symbols=[SP500,NVDA]", "data.start=2005-01-01", "data.end=2012-12-31", "algo.eval_every=0",
        "algo.n_envs=8", "algo.total_timesteps=50000000", "experiment_name=interrupts"]


def _wait_for(path: Path, text: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in path.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            pytest.fail(f"job exited early with {proc.returncode}: {path.read_text()[-3000:]}")
        time.sleep(0.2)
    proc.kill()
    pytest.fail(f"{text!r} never appeared: {path.read_text()[-3000:]}")


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"])
def test_training_stopped_by_signal_is_killed_with_reason_and_no_traceback(tmp_path: Path, sig: signal.Signals,
                                                                           code: int) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out, err = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "ai_trading.train", *TINY], cwd=tmp_path,
                                env={**os.environ, "MLFLOW_TRACKING_URI": uri}, stdout=stdout, stderr=stderr)
        try:
            _wait_for(out, "training algo=", proc, timeout=300)
            time.sleep(2.0)  # well inside training: the progress bar is running
            proc.send_signal(sig)
            returncode = proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
    stderr_text = err.read_text(errors="replace")
    assert returncode == code, stderr_text[-3000:]
    assert "Traceback" not in stderr_text and "Error" not in stderr_text.replace("error_", ""), stderr_text[-3000:]
    lines = [line for line in stderr_text.splitlines() if line.startswith("interrupted:")]
    assert len(lines) == 1 and re.fullmatch(rf"interrupted: stopped by {sig.name} during training \(after \d+ "
                                            rf"timesteps; checkpoint/ saved\) \(exit {code}\)", lines[0]), lines
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("interrupts")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    assert [r.info.status for r in runs] == ["KILLED"]
    (run,) = runs
    assert sig.name in run.data.tags["stop_reason"]
    assert 0 < run.data.metrics["train/timesteps"] < 50_000_000
    saved = {a.path for a in client.list_artifacts(run.info.run_id, "checkpoint")}
    assert {"checkpoint/model.zip", "checkpoint/vecnormalize.pkl"} <= saved
