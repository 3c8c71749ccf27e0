"""SLO and anomaly checks turn each breach into one structured event; a clean run gives none."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from typing import Any

import numpy as np
import pytest

from ai_trading.data import load_bars
from ai_trading.errors import ConfigError, SLOBreach
from ai_trading.evaluation.backtest import BacktestResult, backtest
from ai_trading.evaluation.baselines import buy_and_hold_weights
from ai_trading.evaluation.slo import (
    EvaluationEvent,
    EventKind,
    Severity,
    SLOConfig,
    check_backtests,
    enforce,
    log_events,
)
from ai_trading.execution import SimulatorConfig
from ai_trading.execution.market import build_execution


@pytest.fixture(scope="module")
def clean() -> BacktestResult:
    bars = load_bars(["SP500"], start="2013-01-01", end="2014-12-31")  # a calm bull market
    market, params = build_execution(bars, SimulatorConfig())
    return backtest(market, params, buy_and_hold_weights(market), initial_cash=1e6, name="bh")


def _with(result: BacktestResult, **metrics: float) -> BacktestResult:
    return dataclasses.replace(result, metrics={**result.metrics, **metrics})


def test_slo_clean_buy_and_hold_gives_no_event(clean: BacktestResult) -> None:
    assert check_backtests({"bh": clean}, SLOConfig(), elapsed_seconds=1.0) == []


def test_slo_nan_sharpe_of_a_trading_result_is_a_critical_event(clean: BacktestResult) -> None:
    (event,) = check_backtests({"bh": _with(clean, sharpe=math.nan)}, SLOConfig())
    assert (event.kind, event.severity, event.metric) == (EventKind.NAN_METRIC, Severity.CRITICAL, "sharpe")
    assert event.context["result"] == "bh"


def test_slo_turnover_above_threshold_is_a_turnover_explosion(clean: BacktestResult) -> None:
    (event,) = check_backtests({"bh": _with(clean, turnover=250.0)}, SLOConfig(max_turnover=100.0))
    assert event.kind is EventKind.TURNOVER_EXPLOSION and event.value == 250.0 and event.threshold == 100.0


def test_slo_costs_above_share_of_gross_pnl_fire(clean: BacktestResult) -> None:
    gross_pnl = clean.gross_equity.iloc[-1] - clean.gross_equity.iloc[0]
    assert gross_pnl > 0
    (event,) = check_backtests({"bh": _with(clean, cost_total=0.8 * gross_pnl)}, SLOConfig(max_cost_share=0.5))
    assert event.kind is EventKind.COST_SHARE and event.value == pytest.approx(0.8)
    assert check_backtests({"bh": _with(clean, cost_total=0.4 * gross_pnl)}, SLOConfig(max_cost_share=0.5)) == []


def test_slo_implausible_sharpe_and_slow_run(clean: BacktestResult) -> None:
    events = check_backtests({"bh": _with(clean, sharpe=-6.0)}, SLOConfig(max_abs_sharpe=4.0, budget_seconds=10.0),
                             elapsed_seconds=12.5)
    assert [e.kind for e in events] == [EventKind.IMPLAUSIBLE_SHARPE, EventKind.SLOW_RUN]
    assert events[1].value == 12.5 and events[1].threshold == 10.0


def test_slo_cash_result_with_nan_sharpe_is_not_an_anomaly(clean: BacktestResult) -> None:
    cash = dataclasses.replace(clean, metrics={**clean.metrics, "sharpe": math.nan, "traded_notional": 0.0,
                                               "turnover": 0.0, "cost_total": 0.0})
    assert check_backtests({"cash": cash}, SLOConfig()) == []


def test_slo_events_are_frozen_and_logged_as_json() -> None:
    event = EvaluationEvent(EventKind.NAN_METRIC, Severity.CRITICAL, "sharpe", math.nan, math.nan, {"result": "x"})
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.value = 1.0  # type: ignore[misc]

    class Sink:
        def __init__(self) -> None:
            self.logged: dict[str, Any] = {}

        def log_dict(self, payload: dict[str, Any], artifact_file: str) -> None:
            self.logged[artifact_file] = json.loads(json.dumps(payload, allow_nan=False))

    sink = Sink()
    log_events(sink, [event])
    (record,) = sink.logged["eval/slo_events.json"]["events"]
    assert record == {"kind": "nan_metric", "severity": "critical", "metric": "sharpe", "value": "nan",
                      "threshold": "nan", "context": {"result": "x"}}


def test_slo_config_rejects_non_positive_threshold() -> None:
    with pytest.raises(ConfigError):
        SLOConfig(max_turnover=0.0)
    assert np.isfinite(SLOConfig().max_abs_sharpe)


def test_slo_breach_is_a_warning_and_fails_the_job_only_under_fail_on_breach(
        clean: BacktestResult, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="ai_trading.evaluation.slo"):
        events = check_backtests({"bh": _with(clean, sharpe=math.nan)}, SLOConfig())
    assert events and events[0].severity is Severity.CRITICAL
    assert [r.levelno for r in caplog.records] == [logging.WARNING]  # critical or not, a breach never logs ERROR
    enforce(events, SLOConfig())  # the default: the job goes on
    with pytest.raises(SLOBreach, match="nan_metric"):
        enforce(events, SLOConfig(fail_on_breach=True))
    enforce([], SLOConfig(fail_on_breach=True))
