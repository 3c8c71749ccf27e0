"""Evaluation SLOs and anomaly checks: each breach becomes a structured :class:`EvaluationEvent`.

Checks (thresholds in :class:`SLOConfig`, ``conf/evaluate.yaml`` key ``slo``):

* ``nan_metric``: a required metric (``required_metrics``) is NaN or inf for a result that traded;
* ``turnover_explosion``: annualised turnover above ``max_turnover`` (times equity per year);
* ``cost_share``: total costs above ``max_cost_share`` of the absolute gross PnL;
* ``implausible_sharpe``: ``|net Sharpe|`` above ``max_abs_sharpe`` (out of sample, almost always a bug
  such as look-ahead);
* ``slow_run``: the evaluation took longer than ``budget_seconds``.

A breach is a WARNING: each event is logged at WARNING and attached to the run as JSON (:func:`log_events`)
for the alerts module to route, and the job goes on. With ``fail_on_breach`` the job fails instead
(:func:`enforce`, after the events are attached), so its run ends FAILED and the exit status says so.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from ai_trading.errors import ConfigError, SLOBreach
from ai_trading.evaluation.backtest import BacktestResult

log = logging.getLogger(__name__)


class EventKind(StrEnum):
    NAN_METRIC = "nan_metric"
    TURNOVER_EXPLOSION = "turnover_explosion"
    COST_SHARE = "cost_share"
    IMPLAUSIBLE_SHARPE = "implausible_sharpe"
    SLOW_RUN = "slow_run"


class Severity(StrEnum):
    WARNING = "warning"
    CRITICAL = "critical"


@dataclass(frozen=True)
class EvaluationEvent:
    """One SLO breach: what (``kind``, ``metric``), how bad (``value`` vs ``threshold``, ``severity``) and
    where (``context``: result name, run facts)."""

    kind: EventKind
    severity: Severity
    metric: str
    value: float
    threshold: float
    context: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["kind"], out["severity"], out["context"] = str(self.kind), str(self.severity), dict(self.context)
        for key in ("value", "threshold"):  # JSON has no NaN/inf
            if not math.isfinite(out[key]):
                out[key] = str(out[key])
        return out


@dataclass(frozen=True)
class SLOConfig:
    """Thresholds of the evaluation checks (see the module docstring)."""

    max_turnover: float = 100.0
    max_cost_share: float = 0.5
    max_abs_sharpe: float = 4.0
    budget_seconds: float = 900.0
    required_metrics: Sequence[str] = ("total_return", "sharpe", "max_drawdown", "annualized_volatility")
    fail_on_breach: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "required_metrics", tuple(self.required_metrics))
        for name in ("max_turnover", "max_cost_share", "max_abs_sharpe", "budget_seconds"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"slo.{name}={value!r}: must be a finite number > 0")


def check_backtests(
    results: Mapping[str, BacktestResult], config: SLOConfig, *, elapsed_seconds: float | None = None
) -> list[EvaluationEvent]:
    """Every SLO breach of ``results`` (and of the run time, when given), in a stable order."""
    events: list[EvaluationEvent] = []
    for name, r in results.items():
        m = r.metrics
        traded = m.get("traded_notional", 0.0) > 0.0
        ctx = {"result": name, "n_periods": m.get("n_periods", math.nan)}
        if traded:
            for key in config.required_metrics:
                value = float(m.get(key, math.nan))
                if not math.isfinite(value):
                    events.append(EvaluationEvent(EventKind.NAN_METRIC, Severity.CRITICAL, key, value, math.nan, ctx))
        turnover = float(m.get("turnover", 0.0))
        if turnover > config.max_turnover:
            events.append(EvaluationEvent(EventKind.TURNOVER_EXPLOSION, Severity.WARNING, "turnover", turnover,
                                          config.max_turnover, ctx))
        costs = float(m.get("cost_total", 0.0))
        gross_pnl = float(r.gross_equity.iloc[-1] - r.gross_equity.iloc[0])
        if costs > 0.0:
            share = costs / abs(gross_pnl) if gross_pnl != 0.0 else math.inf
            if share > config.max_cost_share:
                events.append(EvaluationEvent(EventKind.COST_SHARE, Severity.WARNING, "cost_share_of_gross_pnl",
                                              share, config.max_cost_share,
                                              {**ctx, "cost_total": costs, "gross_pnl": gross_pnl}))
        sharpe = float(m.get("sharpe", math.nan))
        if math.isfinite(sharpe) and abs(sharpe) > config.max_abs_sharpe:
            events.append(EvaluationEvent(EventKind.IMPLAUSIBLE_SHARPE, Severity.CRITICAL, "sharpe", sharpe,
                                          config.max_abs_sharpe, ctx))
    if elapsed_seconds is not None and elapsed_seconds > config.budget_seconds:
        events.append(EvaluationEvent(EventKind.SLOW_RUN, Severity.WARNING, "elapsed_seconds", float(elapsed_seconds),
                                      config.budget_seconds, {}))
    for e in events:
        log.warning("evaluation slo breach kind=%s severity=%s metric=%s value=%s threshold=%s context=%s", e.kind,
                    e.severity, e.metric, e.value, e.threshold, dict(e.context))
    return events


class EventSink(Protocol):
    def log_dict(self, payload: dict[str, Any], artifact_file: str) -> None: ...


def enforce(events: Sequence[EvaluationEvent], config: SLOConfig) -> None:
    """Fail the job on any breach when ``config.fail_on_breach`` (the events are attached to the run first)."""
    if config.fail_on_breach and events:
        kinds = ", ".join(f"{e.kind}({e.metric}={e.value:.4g} > {e.threshold:.4g})" for e in events)
        raise SLOBreach(f"{len(events)} SLO breach(es) with slo.fail_on_breach=true: {kinds}")


def log_events(run: EventSink, events: Sequence[EvaluationEvent], artifact_file: str = "eval/slo_events.json") -> None:
    """Attach the events to the run as JSON (``{"events": [...]}``), also when there are none."""
    run.log_dict({"events": [e.to_dict() for e in events]}, artifact_file)
