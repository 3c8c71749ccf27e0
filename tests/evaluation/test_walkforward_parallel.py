"""Walk-forward folds fitted in joblib worker processes or as Ray tasks give the serial result to the bit."""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from ai_trading.data import load_bars
from ai_trading.errors import ConfigError, MissingExtraError
from ai_trading.evaluation.strategies import MLStrategy, MLStrategyConfig
from ai_trading.evaluation.walkforward import WalkForwardConfig, WalkForwardResult, run_walkforward
from ai_trading.execution import SimulatorConfig
from ai_trading.execution.market import build_execution
from ai_trading.features import FeatureBuilder

HAS_RAY = importlib.util.find_spec("ray") is not None
TIMING = ("fit_seconds",)  # wall time: the only column allowed to differ between backends


def _run(config: WalkForwardConfig) -> WalkForwardResult:
    bars = load_bars(["SP500", "NVDA"], start="2009-01-01", end="2014-12-31")
    features = FeatureBuilder.default().build(bars)
    market, params = build_execution(bars, SimulatorConfig())
    return run_walkforward(market, params, features, MLStrategy(MLStrategyConfig(cv_splits=3)), config)


@pytest.fixture(scope="module")
def serial() -> WalkForwardResult:
    return _run(WalkForwardConfig(n_folds=3, train_bars=400, show_progress=False, seed=7))


def _assert_frames_equal_bitwise(a: pd.DataFrame, b: pd.DataFrame, what: str) -> None:
    assert list(a.columns) == list(b.columns) and a.index.equals(b.index), what
    for column in a.columns:
        x, y = a[column].to_numpy(), b[column].to_numpy()
        if x.dtype.kind == "f":
            assert np.array_equal(x, y, equal_nan=True), f"{what}: column {column}"
        else:
            assert (x == y).all(), f"{what}: column {column}"


def _assert_identical(parallel: WalkForwardResult, serial: WalkForwardResult) -> None:
    assert list(parallel.results) == list(serial.results)
    assert parallel.folds == serial.folds
    for name, r in serial.results.items():
        p = parallel.results[name]
        assert p.metrics.keys() == r.metrics.keys()
        for key, value in r.metrics.items():  # exact: no tolerance
            assert p.metrics[key] == value or (np.isnan(value) and np.isnan(p.metrics[key])), (name, key)
        assert p.gross_metrics == r.gross_metrics or all(
            p.gross_metrics[k] == v or (np.isnan(v) and np.isnan(p.gross_metrics[k])) for k, v in
            r.gross_metrics.items()), name
        for what in ("equity", "gross_equity", "cash", "positions", "costs", "exposure"):
            x, y = getattr(p, what), getattr(r, what)
            assert x.index.equals(y.index), (name, what)
            assert np.array_equal(x.to_numpy(), y.to_numpy(), equal_nan=True), (name, what)
        _assert_frames_equal_bitwise(p.trades, r.trades, f"{name} trades")
        assert p.folds is not None and r.folds is not None
        _assert_frames_equal_bitwise(p.folds, r.folds, f"{name} folds")
    keep = [c for c in serial.fold_info.columns if c not in TIMING]
    _assert_frames_equal_bitwise(parallel.fold_info[keep], serial.fold_info[keep], "fold_info")
    assert serial.fold_info["cv_best_param"].nunique() >= 1 and len(serial.fold_info) == 3


def test_walkforward_joblib_backend_equals_serial_to_the_bit(serial: WalkForwardResult) -> None:
    parallel = _run(WalkForwardConfig(n_folds=3, train_bars=400, show_progress=False, seed=7, backend="joblib",
                                      n_jobs=2))
    assert parallel.backend == "joblib" and serial.backend == "serial"
    _assert_identical(parallel, serial)


@pytest.mark.skipif(not HAS_RAY, reason="ray is the optional [ray] extra (pip install -e '.[ray]'); not installed")
@pytest.mark.slow
@pytest.mark.xdist_group("ray")  # on the worker of the Ray sweep test, whose teardown stops every Ray process
def test_walkforward_ray_backend_equals_serial_to_the_bit(serial: WalkForwardResult) -> None:
    parallel = _run(WalkForwardConfig(n_folds=3, train_bars=400, show_progress=False, seed=7, backend="ray",
                                      n_jobs=2))
    _assert_identical(parallel, serial)


def test_walkforward_fold_fits_run_under_per_fold_seeds_on_every_backend(serial: WalkForwardResult) -> None:
    """A fit that draws from numpy's global generator draws the same numbers in a worker as in the serial run:
    changing the walk-forward seed changes them, the backend does not."""
    draws = {}
    for backend, seed in (("serial", 7), ("joblib", 7), ("serial", 8)):
        config = WalkForwardConfig(n_folds=3, train_bars=400, show_progress=False, seed=seed, backend=backend,
                                   n_jobs=2)
        draws[(backend, seed)] = _run_drawing(config)
    assert draws[("serial", 7)] == draws[("joblib", 7)]
    assert draws[("serial", 7)] != draws[("serial", 8)]


def _run_drawing(config: WalkForwardConfig) -> list[float]:
    from tests.evaluation.drawing_strategy import DrawingStrategy

    bars = load_bars(["SP500"], start="2009-01-01", end="2012-12-31")
    market, params = build_execution(bars, SimulatorConfig())
    wf = run_walkforward(market, params, None, DrawingStrategy(), replace(config, baselines=()))
    return [float(v) for v in wf.fold_info["draw"]]


def test_walkforward_backend_is_validated() -> None:
    with pytest.raises(ConfigError, match=r"walkforward\.backend='dask'"):
        WalkForwardConfig(backend="dask")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"walkforward\.n_jobs=0"):
        WalkForwardConfig(backend="joblib", n_jobs=0)
    with pytest.raises(ConfigError, match="only applies to backend=ray"):
        WalkForwardConfig(ray_address="127.0.0.1:6379")


def test_walkforward_ray_backend_without_ray_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    with pytest.raises(MissingExtraError) as info:
        _run(WalkForwardConfig(n_folds=3, train_bars=400, show_progress=False, backend="ray"))
    assert "walkforward.backend=ray" in str(info.value) and "pip install -e '.[ray]'" in str(info.value)
