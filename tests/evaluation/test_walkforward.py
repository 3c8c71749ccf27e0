"""Walk-forward on the bundled data: fold layout, stitched OOS run reconciles with its fills, baselines side by
side, per-fold metrics stitch to the overall ones; the module stays free of hydra and mlflow."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hydra.utils import instantiate
from sklearn.model_selection import GridSearchCV

from ai_trading.data import load_bars
from ai_trading.errors import EvaluationError
from ai_trading.evaluation import strategies
from ai_trading.evaluation.strategies import (
    FittedStrategy,
    MLStrategy,
    MLStrategyConfig,
    StrategyInputs,
    make_strategy,
)
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
    # The smallest data that fits: train_bars + 2 rows per fold + the last bar (nothing to execute after it).
    assert len(make_folds(10, 10 + 20 + 8 + 1, WalkForwardConfig(n_folds=4, train_bars=20))) == 4


def test_make_folds_too_little_data_says_what_to_change() -> None:
    with pytest.raises(EvaluationError) as info:
        make_folds(10, 10 + 20 + 8, WalkForwardConfig(n_folds=4, train_bars=20))
    message = str(info.value)
    assert "need at least 29 bars with features, the data have 28" in message
    assert "walkforward.train_bars" in message and "walkforward.n_folds" in message and "data.start" in message


@dataclass
class SeenByFit:
    """What one fit was given (decision rows ``[start, stop)``) and what its model was fitted on: the
    decision timestamps of the training samples and the timestamps where their labels end."""

    start: int
    stop: int
    samples: pd.DatetimeIndex = field(default_factory=lambda: pd.DatetimeIndex([]))
    label_ends: pd.DatetimeIndex = field(default_factory=lambda: pd.DatetimeIndex([]))
    n_rows: int = 0


@dataclass
class RecordingFitted:
    inner: FittedStrategy
    tested: list[tuple[int, int]]

    @property
    def name(self) -> str:
        return self.inner.name

    def targets(self, inputs: StrategyInputs, start: int, stop: int) -> np.ndarray:
        self.tested.append((start, stop))
        return self.inner.targets(inputs, start, stop)

    def describe(self) -> dict[str, float]:
        return self.inner.describe()


@dataclass
class RecordingStrategy:
    """Wraps the real ML strategy and records, per fold, the rows its fit was given, the samples and label
    ends its model was actually fitted on (read from the cross-validated search it runs), and the rows
    the fitted strategy was then asked to trade."""

    inner: MLStrategy
    fits: list[SeenByFit] = field(default_factory=list)
    tested: list[tuple[int, int]] = field(default_factory=list)
    timestamps: pd.DatetimeIndex = field(default_factory=lambda: pd.DatetimeIndex([]))

    @property
    def name(self) -> str:
        return self.inner.name

    def fit(self, inputs: StrategyInputs, start: int, stop: int) -> RecordingFitted:
        self.timestamps = inputs.market.timestamps
        self.fits.append(SeenByFit(start, stop))
        return RecordingFitted(self.inner.fit(inputs, start, stop), self.tested)


def _recording_search(recorder: RecordingStrategy) -> type[GridSearchCV]:
    class RecordingSearch(GridSearchCV):
        def fit(self, X: Any, y: Any = None, **params: Any) -> Any:
            seen = recorder.fits[-1]
            t1 = self.cv.t1  # PurgedKFold: label end time of every training sample, indexed by its time
            seen.samples, seen.label_ends = pd.DatetimeIndex(t1.index), pd.DatetimeIndex(t1.to_numpy())
            seen.n_rows = len(X)
            return super().fit(X, y, **params)

    return RecordingSearch


@pytest.fixture(scope="module")
def recorder() -> RecordingStrategy:
    return RecordingStrategy(MLStrategy(MLStrategyConfig(cv_splits=3)))


@pytest.fixture(scope="module")
def bundled(recorder: RecordingStrategy) -> tuple[pd.DataFrame, WalkForwardResult]:
    bars = load_bars(["SP500", "NVDA", "YHOO"], start="2009-01-01", end="2016-06-30")  # YHOO ends 2015-12-31
    features = FeatureBuilder.default().build(bars)
    market, params = build_execution(bars, SimulatorConfig())
    config = WalkForwardConfig(n_folds=4, train_bars=500, initial_cash=CASH, show_progress=False)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(strategies, "GridSearchCV", _recording_search(recorder))
        return bars, run_walkforward(market, params, features, recorder, config)


def test_walkforward_each_fold_fits_only_on_data_and_labels_that_end_before_its_test_window(
        bundled: tuple[pd.DataFrame, WalkForwardResult], recorder: RecordingStrategy) -> None:
    _, wf = bundled
    ts = recorder.timestamps
    assert len(recorder.fits) == len(recorder.tested) == 4
    for k, (seen, (test_start, test_stop)) in enumerate(zip(recorder.fits, recorder.tested, strict=True)):
        first_test = ts[test_start]
        assert seen.start < seen.stop <= test_start < test_stop
        assert seen.n_rows == len(seen.samples) == len(seen.label_ends) > 100
        assert seen.samples.max() < first_test, k
        assert seen.label_ends.max() < first_test, k  # labels included: none reaches into the test window
        assert (seen.label_ends > seen.samples).all()
        # The fit uses its data up to the boundary: its last label ends on the bar before the test window.
        assert seen.label_ends.max() == ts[test_start - 1], k
        # The rows traded are the ones the stitched out-of-sample run reports for this fold.
        assert first_test == wf.fold_info["test_start"].iloc[k] == wf.results["ml"].folds["start"].iloc[k]
        if k:
            assert test_start == recorder.tested[k - 1][1]  # contiguous test windows


def test_walkforward_reports_strategy_and_baselines_on_the_same_oos_span(bundled: tuple[pd.DataFrame,
                                                                                        WalkForwardResult]) -> None:
    _, wf = bundled
    assert list(wf.results) == ["ml", "buy_and_hold", "cash", "trend"]
    index = wf.results["ml"].equity.index
    for r in wf.results.values():
        assert r.equity.index.equals(index)
        assert r.folds is not None and len(r.folds) == 4
    assert index[0] == wf.fold_info["test_start"].iloc[0]
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
    # YHOO's data end inside the OOS span: buy-and-hold keeps it, marked at its last close, and does not
    # buy the others with its value.
    yhoo_last = bars.xs("YHOO", level="symbol").index[-1]
    bh = wf.results["buy_and_hold"]
    held = bh.positions["YHOO"].loc[yhoo_last:]
    assert held.iloc[0] > 0 and (held == held.iloc[0]).all()
    assert bh.exposure.max() < 1.01


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
