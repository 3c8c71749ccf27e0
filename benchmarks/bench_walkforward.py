"""Throughput of a 10-fold walk-forward over all bundled daily data, against a plain-Python event loop.

Run: ``python benchmarks/bench_walkforward.py`` (single process; pin one core with ``taskset -c 0``).
The walk-forward fits the ML strategy per fold (purged CV) and runs the stitched strategy and the three
baselines through the compiled simulator. Bars/s counts bar x symbol steps of those four backtests. The
plain-Python loop (``py_sequence`` of ``bench_simulator.py``) replays the same four target sequences with
the same accounting and draws in the same run; its final equities must equal the vectorised ones.
"""

from __future__ import annotations

import math
import time

import numpy as np
from bench_simulator import py_sequence

from ai_trading.data import load_bars
from ai_trading.evaluation.strategies import MLStrategy, MLStrategyConfig
from ai_trading.evaluation.walkforward import WalkForwardConfig, run_walkforward
from ai_trading.execution import SimulatorConfig, run_targets
from ai_trading.execution.market import build_execution, draw_noise, slice_market
from ai_trading.features import FeatureBuilder

CASH = 1_000_000.0


def main() -> None:
    bars = load_bars(["SP500", "NASDAQ", "NVDA", "ORCL", "YHOO"])
    features = FeatureBuilder.default().build(bars)
    market, params = build_execution(bars, SimulatorConfig())
    config = WalkForwardConfig(n_folds=10, show_progress=False)
    strategy = MLStrategy(MLStrategyConfig())
    run_targets(market, params, np.zeros(market.shape), np.random.default_rng(0), initial_cash=1.0)  # compile/load
    t0 = time.perf_counter()
    wf = run_walkforward(market, params, features, strategy, config)
    total_s = time.perf_counter() - t0
    first = wf.folds[0].test_start
    window = slice_market(market, first, wf.folds[-1].test_stop + 1)
    T, N = window.shape
    steps = (T - 1) * N * len(wf.results)
    fit_s = float(wf.fold_info["fit_seconds"].sum())

    t0 = time.perf_counter()
    for r in wf.results.values():
        run_targets(window, params, r.targets.to_numpy(), np.random.default_rng(config.seed), initial_cash=CASH)
    vec_s = time.perf_counter() - t0

    rng = np.random.default_rng(config.seed)
    noise = draw_noise(rng, (T - 1, N)).tolist()
    t0 = time.perf_counter()
    py_equity = {name: py_sequence(window, params.values, params.impact_scale.tolist(), r.targets.to_numpy().tolist(),
                                   noise, CASH, T) for name, r in wf.results.items()}
    py_s = time.perf_counter() - t0
    for name, r in wf.results.items():
        final = r.equity.iloc[-1]
        assert math.isclose(py_equity[name], final, rel_tol=1e-9), (name, py_equity[name], final)

    print(f"walk-forward 10 folds, {N} daily symbols, {T - 1} OOS bars, {len(wf.results)} backtests "
          f"({', '.join(wf.results)})")
    print(f"  whole walk-forward (features given; fits {fit_s:.2f}s)  {total_s:7.2f}s  {steps / total_s:12,.0f} bars/s")
    print(f"  backtests only, compiled kernel                    {vec_s:7.3f}s  {steps / vec_s:12,.0f} bars/s")
    print(f"  backtests only, plain-Python event loop            {py_s:7.3f}s  {steps / py_s:12,.0f} bars/s")
    print(f"  ratio kernel / Python {py_s / vec_s:7.1f}x   whole walk-forward / Python loop {py_s / total_s:6.2f}x")


if __name__ == "__main__":
    main()
