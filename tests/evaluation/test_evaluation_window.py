"""The out-of-sample window a saved model is checked against before the job runs is the span the walk-forward
then trades: its first decision to its last fill."""

from __future__ import annotations

import pytest

from ai_trading.data import load_bars
from ai_trading.evaluation.strategies import baseline_strategy
from ai_trading.evaluation.walkforward import WalkForwardConfig, evaluation_window, run_walkforward
from ai_trading.execution import SimulatorConfig, build_execution
from ai_trading.features import FeatureBuilder


@pytest.mark.parametrize("scheme", ["expanding", "rolling"])
def test_evaluation_window_is_the_walkforwards_first_decision_to_last_fill(scheme: str) -> None:
    bars = load_bars(["SP500", "NVDA"], start="1998-06-01", end="2002-12-31")  # NVDA starts 1999-01-22
    features = FeatureBuilder.default().build(bars)
    market, params = build_execution(bars, SimulatorConfig())
    config = WalkForwardConfig(n_folds=3, scheme=scheme, train_bars=300, baselines=(),  # type: ignore[arg-type]
                               show_progress=False)
    first, last = evaluation_window(market, features, config)
    wf = run_walkforward(market, params, features, baseline_strategy("trend"), config)
    stamps = market.timestamps
    assert first == stamps[wf.folds[0].test_start] == wf.results["trend"].equity.index[0]
    assert last == stamps[wf.folds[-1].test_stop] == wf.results["trend"].equity.index[-1]
    assert wf.folds[0].test_start > features.spec.warmup + config.train_bars - 1  # feature warm-up counted
