"""What a sweep's end tells the user: each seed's agent next to the baselines on the same window and costs.

Pure: it takes each seed's outcome (its ``eval/<strategy>/net/<metric>`` metrics, or the error that ended it)
and returns the table, the text the sweep prints, and the ``summary/`` metrics its parent run logs. The same
``summary/`` names are each seed's headline metrics (:func:`headline_metrics`), so in the MLflow run list the
parent's row (the mean over seeds) and its seeds' rows line up in the same columns.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pandas as pd

AGENT = "rl"
BASELINES = ("buy_and_hold", "trend")
# (metric of performance_summary, headline name, column header, shown as percent)
COLUMNS = (("sharpe", "net_sharpe", "sharpe", False), ("total_return", "net_return", "return", True),
           ("max_drawdown", "max_drawdown", "max_dd", True), ("turnover", "turnover", "turnover", False))
PREFIX = "summary/"


def _net(metrics: Mapping[str, float], strategy: str, metric: str) -> float:
    return float(metrics.get(f"eval/{strategy}/net/{metric}", math.nan))


def headline_metrics(metrics: Mapping[str, float]) -> dict[str, float]:
    """A seed's few headline metrics, net of costs on the held-out window: ``summary/net_sharpe``,
    ``summary/net_return``, ``summary/max_drawdown``, ``summary/turnover`` and the excess Sharpe and return
    over each baseline (``summary/excess_sharpe_vs_buy_and_hold``, ...)."""
    out = {f"{PREFIX}{name}": _net(metrics, AGENT, metric) for metric, name, _, _ in COLUMNS}
    for baseline in BASELINES:
        for metric, name in (("sharpe", "sharpe"), ("total_return", "return")):
            out[f"{PREFIX}excess_{name}_vs_{baseline}"] = _net(metrics, AGENT, metric) - _net(metrics, baseline, metric)
    return out


@dataclass(frozen=True)
class SeedOutcome:
    """One job of a sweep as its run recorded it: FINISHED with metrics, or FAILED/KILLED with the error."""

    name: str
    status: str
    metrics: Mapping[str, float] = field(default_factory=dict)
    error: str | None = None
    seed: int | None = None


@dataclass(frozen=True)
class SweepTable:
    """The sweep's summary: ``table`` has one row per seed (failed ones with their error), ``text`` is what
    the sweep prints, ``metrics`` what the parent run logs."""

    table: pd.DataFrame
    text: str
    metrics: dict[str, float]
    finished: int
    failed: int


def _beats(metrics: Mapping[str, float], baseline: str) -> bool:
    agent, other = _net(metrics, AGENT, "sharpe"), _net(metrics, baseline, "sharpe")
    return math.isfinite(agent) and math.isfinite(other) and agent > other


_W = 9  # column width


def _cell(value: float, percent: bool) -> str:
    if not math.isfinite(value):
        return "n/a"
    return f"{value * 100:.1f}%" if percent else f"{value:.3f}"


def _row(label: str, values: Mapping[str, Sequence[float]], extra: str = "") -> str:
    """One line: the label, then the four columns of each strategy."""
    cells = "".join(f"{_cell(v, pct):>{_W}}" for strategy in (AGENT, *BASELINES)
                    for v, (_, _, _, pct) in zip(values[strategy], COLUMNS, strict=True))
    return f"{label:<8}{cells}{extra}"


def _values(metrics: Mapping[str, float]) -> dict[str, list[float]]:
    return {s: [_net(metrics, s, m) for m, _, _, _ in COLUMNS] for s in (AGENT, *BASELINES)}


def summarise(sweep_id: str, outcomes: Sequence[SeedOutcome]) -> SweepTable:
    """The summary of one sweep's outcomes (in the order given; sort them by seed first)."""
    finished = [o for o in outcomes if o.status == "FINISHED"]
    failed = [o for o in outcomes if o.status != "FINISHED"]
    rows = []
    for o in outcomes:
        row: dict[str, object] = {"run": o.name, "seed": o.seed, "status": o.status}
        for strategy in (AGENT, *BASELINES):
            for metric, _, _, _ in COLUMNS:
                row[f"{strategy}_net_{metric}"] = _net(o.metrics, strategy, metric)
        for baseline in BASELINES:
            row[f"beats_{baseline}"] = _beats(o.metrics, baseline) if o.status == "FINISHED" else None
        row["error"] = o.error
        rows.append(row)
    table = pd.DataFrame(rows)

    label = {id(o): f"seed{o.seed}" if o.seed is not None else o.name for o in outcomes}
    span = _W * len(COLUMNS)
    groups = "".join(f"{' ' + (AGENT + ' (agent)' if s == AGENT else s) + ' ':-^{span}}" for s in (AGENT, *BASELINES))
    header = "".join(f"{h:>{_W}}" for s in (AGENT, *BASELINES) for _, _, h, _ in COLUMNS)
    lines = [f"sweep {sweep_id}: {len(finished)} of {len(outcomes)} seeds finished. Net of costs on the held-out "
             "window; each seed's baselines ran on its window, costs and execution draws",
             f"{'':<8}{groups}  agent's Sharpe beats",
             f"{'':<8}{header}  " + " ".join(BASELINES)]
    for o in finished:
        marks = "  " + " ".join(f"{'yes' if _beats(o.metrics, b) else 'no':<{len(b)}}" for b in BASELINES)
        lines.append(_row(label[id(o)], _values(o.metrics), marks))
    metrics: dict[str, float] = {f"{PREFIX}seeds_finished": float(len(finished)),
                                 f"{PREFIX}seeds_failed": float(len(failed))}
    if finished:
        frame = pd.DataFrame([headline_metrics(o.metrics) for o in finished])
        metrics.update({str(name): float(value) for name, value in frame.mean().items()})  # NaN-skipping
        metrics.update({f"{PREFIX}{n}_std": float(frame[f"{PREFIX}{n}"].std()) for _, n, _, _ in COLUMNS})
        per_seed = [_values(o.metrics) for o in finished]
        means = {s: [float(pd.Series([v[s][k] for v in per_seed]).mean()) for k in range(len(COLUMNS))]
                 for s in (AGENT, *BASELINES)}
        stds = {s: [float(pd.Series([v[s][k] for v in per_seed]).std()) for k in range(len(COLUMNS))]
                for s in (AGENT, *BASELINES)}
        beating = {b: sum(_beats(o.metrics, b) for o in finished) for b in BASELINES}
        lines.append(_row("mean", means, "  " + " ".join(f"{f'{beating[b]}/{len(finished)}':<{len(b)}}"
                                                        for b in BASELINES)))
        lines.append(_row("std", stds))
        for baseline in BASELINES:
            for (_, name, _, _), value in zip(COLUMNS, means[baseline], strict=True):
                metrics[f"{PREFIX}{baseline}_{name}"] = value
            metrics[f"{PREFIX}seeds_beating_{baseline}"] = float(beating[baseline])
        lines.append(f"agent's net Sharpe above the baseline's in {len(finished)} seeds: " + ", ".join(
            f"{b} {beating[b]}/{len(finished)}" for b in BASELINES))
    for o in failed:
        lines.append(f"{label[id(o)]} {o.status} (run {o.name}): {o.error or 'no error recorded'}")
    return SweepTable(table=table, text="\n".join(line.rstrip() for line in lines), metrics=metrics,
                      finished=len(finished), failed=len(failed))
