"""Walk-forward on the bundled data: fold layout, stitched OOS run reconciles with its fills, baselines side by
side, per-fold metrics stitch to the overall ones; the module stays free of hydra and mlflow."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from hydra.utils import instantiate

from ai_trading.data import load_bars
from ai_trading.evaluation.strategies import MLStrategy, MLStrategyConfig, make_strategy
from ai_trading.evaluation.walkforward import (
    WalkForwardConfig,
    WalkForwardResult,
    make_folds,
    metrics_table,
    run_walkforward,
)
from ai_trading.execution import SimulatorConfig
from ai_trading.execution.market import build_execution
from ai_trading.features import FeatureBuilder
from tests.conftest import compose_config

CASH = 1_000_000.0


def test_make_folds_expanding_and_rolling_layouts() -> None:
    expanding = make_folds(10, 111, WalkForwardConfig(n_folds=4, train_bars=20, scheme="expanding"))
    assert [(f.train_start, f.train_stop, f.test_start, f.test_stop) for f in expanding] == [
        (10, 30, 30, 50), (10, 50, 50, 70), (10, 70, 70, 90), (10, 90, 90, 110)]
    rolling = make_folds(10, 111, WalkForwardConfig(n_folds=4, train_bars=20, scheme="rolling"))
    assert [(f.train_start, f.train_stop) for f in rolling] == [(10, 30), (30, 50), (50, 70), (70, 90)]
    fixed = make_folds(0, 1000, WalkForwardConfig(n_folds=2, train_bars=100, test_bars=50))
    assert [(f.test_start, f.test_stop) for f in fixed] == [(100, 150), (150, 200)]


@pytest.fixture(scope="module")
def bundled() -> tuple[pd.DataFrame, WalkForwardResult]:
    bars = load_bars(["SP500", "NVDA", "YHOO"], start="2009-01-01", end="2016-06-30")  # YHOO ends 2015-12-31
    features = FeatureBuilder.default().build(bars)
    market, params = build_execution(bars, SimulatorConfig())
    config = WalkForwardConfig(n_folds=4, train_bars=500, initial_cash=CASH, show_progress=False)
    return bars, run_walkforward(market, params, features, MLStrategy(MLStrategyConfig(cv_splits=3)), config)


def test_walkforward_reports_strategy_and_baselines_on_the_same_oos_span(bundled: tuple[pd.DataFrame,
                                                                                        WalkForwardResult]) -> None:
    _, wf = bundled
    assert list(wf.results) == ["ml", "buy_and_hold", "cash", "trend"]
    index = wf.results["ml"].equity.index
    for r in wf.results.values():
        assert r.equity.index.equals(index)
        assert r.folds is not None and len(r.folds) == 4
    assert index[0] == wf.fold_info["test_start"].iloc[0]
    assert (wf.fold_info["train_stop"] < wf.fold_info["test_start"]).all()
    table = metrics_table(wf.results)
    assert list(table.index) == list(wf.results) and {"net_sharpe", "gross_sharpe"} <= set(table.columns)


def test_walkforward_equity_reconciles_with_fills_and_net_is_gross_minus_costs(
        bundled: tuple[pd.DataFrame, WalkForwardResult]) -> None:
    bars, wf = bundled
    closes = bars["close"].unstack("symbol").sort_index().ffill()
    for name, r in wf.results.items():
        tr = r.trades
        by_t = tr.groupby("timestamp")
        idx = r.equity.index
        cash = CASH - (by_t.apply(lambda g: (g["qty"] * g["price"] + g["fees"]).sum()) if len(tr) else
                       pd.Series(dtype=float)).reindex(idx, fill_value=0.0).cumsum()
        gross_cash = CASH - (by_t.apply(lambda g: (g["qty"] * g["ref"]).sum()) if len(tr) else
                             pd.Series(dtype=float)).reindex(idx, fill_value=0.0).cumsum()
        shares = (tr.pivot_table(index="timestamp", columns="symbol", values="qty", aggfunc="sum") if len(tr) else
                  pd.DataFrame()).reindex(index=idx, columns=list(closes.columns)).fillna(0.0).cumsum()
        held = (shares * closes.reindex(idx)).sum(axis=1)
        financed = r.financing.reindex(idx, fill_value=0.0).cumsum()  # not a cost: in net and gross
        cash, gross_cash = cash + financed, gross_cash + financed
        np.testing.assert_allclose(r.cash.to_numpy(), cash.to_numpy(), rtol=1e-9, atol=1e-4, err_msg=name)
        np.testing.assert_allclose(r.equity.to_numpy(), (cash + held).to_numpy(), rtol=1e-9, err_msg=name)
        np.testing.assert_allclose(r.gross_equity.to_numpy(), (gross_cash + held).to_numpy(), rtol=1e-9,
                                   err_msg=name)
        costs = float((tr["spread"] + tr["impact"] + tr["fees"]).sum()) if len(tr) else 0.0
        assert r.gross_equity.iloc[-1] - r.equity.iloc[-1] == pytest.approx(costs, rel=1e-9, abs=1e-6)
    assert wf.results["ml"].total_costs > 0 and wf.results["cash"].total_costs == 0.0
    yhoo_last = bars.xs("YHOO", level="symbol").index[-1]
    assert wf.results["buy_and_hold"].positions["YHOO"].loc[yhoo_last:].abs().max() == 0.0


def test_walkforward_fold_returns_compound_to_the_overall_return(bundled: tuple[pd.DataFrame,
                                                                               WalkForwardResult]) -> None:
    _, wf = bundled
    for r in wf.results.values():
        assert r.folds is not None
        compounded = float(np.prod(1.0 + r.folds["net_total_return"].to_numpy()) - 1.0)
        assert compounded == pytest.approx(r.metrics["total_return"], rel=1e-9, abs=1e-12)
        assert int(r.folds["periods"].sum()) == int(r.metrics["n_periods"])


@pytest.mark.parametrize("name", ["ml", "trend", "buy_and_hold"])
def test_evaluate_config_composes_and_builds_each_strategy(name: str) -> None:
    cfg = compose_config([f"strategy={name}"], config_name="evaluate")
    strategy = make_strategy(instantiate(cfg.strategy, _convert_="all"))
    assert strategy.name == name
    assert isinstance(instantiate(cfg.walkforward, _convert_="all"), WalkForwardConfig)


def test_walkforward_module_import_loads_neither_hydra_nor_mlflow() -> None:
    code = ("import sys, ai_trading.evaluation.walkforward, ai_trading.evaluation.report, "
            "ai_trading.evaluation.slo; print(sorted(m for m in ('hydra', 'mlflow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "[]"
