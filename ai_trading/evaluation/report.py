"""Log a set of named backtests to a tracked run: namespaced metrics, CSVs and PNG plots.

Generic over who produced the results (walk-forward evaluation, the RL trainer's evaluation episodes):
:func:`log_backtests` takes any sink with the :class:`~ai_trading.tracking.TrackedRun` methods it uses
(:class:`RunSink`), so this module does not import the tracking package (nor mlflow).

Layout, for ``prefix="eval"`` and a result named ``ml``:

* metrics ``eval/ml/net/<metric>`` and ``eval/ml/gross/<metric>`` (every key of
  :func:`~ai_trading.evaluation.metrics.performance_summary`);
* ``eval/folds.csv`` (per-fold metrics of every result, with a ``name`` column), ``eval/equity.csv``
  (net and gross equity of every result), ``eval/trades/ml.csv`` (every fill);
* ``plots/equity.png`` (net curves, plus the gross curve of the first result), ``plots/drawdown.png``,
  ``plots/costs_ml.png`` (stacked cumulative spread, impact and fees) for each result that traded.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Protocol

import pandas as pd

from ai_trading.evaluation.backtest import BacktestResult
from ai_trading.evaluation.plots import costs_figure, drawdown_figure, equity_figure

log = logging.getLogger(__name__)


class RunSink(Protocol):
    """What :func:`log_backtests` needs of a run (``TrackedRun`` provides it)."""

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None: ...

    def log_text(self, text: str, artifact_file: str) -> None: ...

    def log_figure(self, figure: Any, artifact_file: str) -> None: ...


def backtest_metrics(results: Mapping[str, BacktestResult], prefix: str = "eval") -> dict[str, float]:
    """``{prefix}/{name}/net/{metric}`` and ``{prefix}/{name}/gross/{metric}`` of every result."""
    out: dict[str, float] = {}
    for name, r in results.items():
        out.update({f"{prefix}/{name}/net/{k}": float(v) for k, v in r.metrics.items()})
        out.update({f"{prefix}/{name}/gross/{k}": float(v) for k, v in r.gross_metrics.items()})
    return out


def log_backtests(
    run: RunSink,
    results: Mapping[str, BacktestResult],
    prefix: str = "eval",
    plots_folder: str = "plots",
    step: int | None = None,
) -> dict[str, float]:
    """Log every result's metrics, CSVs and plots (layout in the module docstring); returns the metrics."""
    if not results:
        return {}
    metrics = backtest_metrics(results, prefix)
    run.log_metrics(metrics, step=step)
    folds = [r.folds.assign(name=name) for name, r in results.items() if r.folds is not None]
    if folds:
        table = pd.concat(folds, ignore_index=True)
        run.log_text(table[["name", *[c for c in table.columns if c != "name"]]].to_csv(index=False),
                     f"{prefix}/folds.csv")
    curves = pd.concat({f"{name}/{kind}": curve for name, r in results.items()
                        for kind, curve in (("net", r.equity), ("gross", r.gross_equity))}, axis=1)
    run.log_text(curves.to_csv(index_label="timestamp"), f"{prefix}/equity.csv")
    for name, r in results.items():
        run.log_text(r.trades.to_csv(index=False), f"{prefix}/trades/{name}.csv")
    first = next(iter(results))
    equity_curves = {f"{name} (net)": r.equity for name, r in results.items()}
    equity_curves[f"{first} (gross)"] = results[first].gross_equity
    run.log_figure(equity_figure(equity_curves, title=f"{prefix}: equity"), f"{plots_folder}/equity.png")
    run.log_figure(drawdown_figure({name: r.equity for name, r in results.items()}, title=f"{prefix}: drawdown"),
                   f"{plots_folder}/drawdown.png")
    for name, r in results.items():
        if r.total_costs > 0:
            run.log_figure(costs_figure(r.costs, title=f"{prefix}: cumulative costs of {name}"),
                           f"{plots_folder}/costs_{name}.png")
    log.info("backtests logged prefix=%s results=%s metrics=%d", prefix, ",".join(results), len(metrics))
    return metrics
