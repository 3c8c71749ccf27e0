"""PNG-ready figures of a backtest: equity (net vs gross vs baselines), drawdown and cumulative costs.

Figures are built with matplotlib's object API (``Figure``, no pyplot state, no display needed); the tracking
module logs them as artifacts under ``plots/``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from matplotlib.figure import Figure


def _drawdown(equity: pd.Series) -> pd.Series:
    return equity / equity.cummax() - 1.0


def equity_figure(curves: Mapping[str, pd.Series], title: str = "Equity") -> Figure:
    """Equity curves, e.g. ``{"strategy (net)": ..., "strategy (gross)": ..., "buy & hold": ...}``.

    A log scale is used once the curves span more than a factor of three, where it reads better.
    """
    fig = Figure(figsize=(10, 5), layout="constrained")
    ax = fig.add_subplot()
    for name, curve in curves.items():
        ax.plot(curve.index, curve.to_numpy(), label=name, linewidth=1.2)
    values = np.concatenate([c.to_numpy(dtype=float) for c in curves.values()]) if curves else np.ones(1)
    if values.min() > 0 and values.max() / values.min() > 3.0:
        ax.set_yscale("log")
    ax.set_title(title)
    ax.set_ylabel("equity")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best")
    return fig


def drawdown_figure(curves: Mapping[str, pd.Series], title: str = "Drawdown") -> Figure:
    """Drawdown from the running peak, in percent, for each curve."""
    fig = Figure(figsize=(10, 4), layout="constrained")
    ax = fig.add_subplot()
    for name, curve in curves.items():
        dd = _drawdown(curve) * 100.0
        ax.fill_between(dd.index, dd.to_numpy(), 0.0, alpha=0.25)
        ax.plot(dd.index, dd.to_numpy(), label=name, linewidth=1.0)
    ax.set_title(title)
    ax.set_ylabel("drawdown (%)")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower left")
    return fig


def costs_figure(costs: pd.DataFrame, title: str = "Cumulative execution costs") -> Figure:
    """Stacked cumulative costs in currency; ``costs`` has one column per component (spread, impact, fees)."""
    fig = Figure(figsize=(10, 4), layout="constrained")
    ax = fig.add_subplot()
    cumulative = costs.cumsum()
    ax.stackplot(cumulative.index, np.vstack([cumulative[c].to_numpy() for c in cumulative.columns]),
                 labels=list(cumulative.columns), alpha=0.7)
    ax.set_title(title)
    ax.set_ylabel("currency")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left")
    return fig


def seed_sharpe_figure(seeds: Mapping[str, float], baselines: Mapping[str, float],
                       title: str = "Net Sharpe per seed against the baselines") -> Figure:
    """One bar per seed's net Sharpe, a horizontal line per baseline's on the same window and costs."""
    fig = Figure(figsize=(10, 4), layout="constrained")
    ax = fig.add_subplot()
    names = list(seeds)
    ax.bar(names, [seeds[n] for n in names], color="tab:blue", alpha=0.8, label="agent (net)")
    for (name, value), color in zip(baselines.items(), ("tab:orange", "tab:green", "tab:red", "tab:purple"),
                                    strict=False):
        ax.axhline(value, color=color, linestyle="--", linewidth=1.5, label=f"{name} (net) {value:.3f}")
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_title(title)
    ax.set_ylabel("net Sharpe")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(loc="best")
    return fig
