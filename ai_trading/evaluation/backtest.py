"""Backtest of a target sequence through the simulator's vectorised path: equity only from simulated fills.

:func:`backtest` executes a ``T x N`` target matrix (weights of equity, or shares) on a
:class:`~ai_trading.execution.MarketArrays` window with :func:`~ai_trading.execution.run_targets` and
returns a :class:`BacktestResult`: net equity (after costs, from the simulated cash and positions), gross
equity (the same fills at their reference price, no fees), costs split per period into spread, impact and
fees, the financing per period, traded notional, gross exposure, the fills, and net and gross metrics from
:func:`~ai_trading.evaluation.metrics.performance_summary`.

Financing (interest on cash, margin interest on a debit, the borrow fee on shorts; see the simulator preset)
is not an execution cost: both the net and the gross curve carry it, and ``financing_total`` (currency,
negative when the book paid) reports it in both metric sets. Since cash earns the preset's risk-free rate,
the Sharpe and Sortino ratios are of the returns in excess of it (per period: the annual rate compounded
every bar), so holding cash scores about 0, not the ratio of a tiny steady carry to its tiny dispersion.

Timing follows the simulator: row ``t`` of the targets is decided at bar ``t``'s close and executes on bar
``t+1``; row 0 of every curve is the initial state (cash only), so ``n`` periods give ``n + 1`` points.

Symbols with different date ranges: a target is forced to 0 where the symbol has no bar at the decision
row (:func:`decision_mask`), and nothing else: a decision uses only what is known at its bar, and the end
of a symbol's data (a delisting, the end of a file) is not known a bar early. A position in a symbol
whose data end before the window does therefore stays held after its last bar (no bar, no fill) and is
marked at its last close (the market arrays forward-fill ``mark``), as an untradable holding would be.
Positions are not liquidated at the window's end either.

``periods_per_year`` is the market's bar frequency (``market.frequency``, from
:func:`~ai_trading.data.frequency.infer_frequency` or ``data.periods_per_year``), so a short window keeps
the annualisation of its data: 252 for daily bars, 52 weekly, 12 monthly; for intraday bars
``252 * bars per session``, with bars per session the median count of bars per calendar day (e.g. 764 for
the bundled 1-minute Euro Stoxx 50 future, 390 for a regular US equity session).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import pandas as pd

from ai_trading.errors import ConfigError, EvaluationError
from ai_trading.evaluation.metrics import gross_equity, performance_summary
from ai_trading.execution import ExecParams, MarketArrays, run_targets
from ai_trading.execution.market import P_CASH_RATE

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
COST_COLUMNS = ("spread", "impact", "fees")


def decision_mask(market: MarketArrays) -> npt.NDArray[np.bool_]:
    """Where a symbol may hold a non-zero target: where it has a bar at the decision row. Only what is
    known at that bar counts, so a symbol is not flattened ahead of its data end; after its last bar it
    cannot trade, and a position in it stays held and marked at its last close."""
    return market.tradable.copy()


@dataclass(frozen=True)
class BacktestResult:
    """One simulated backtest. Curves are indexed by the window's timestamps (``n + 1`` points: row 0 is
    the initial state); per-period series (costs, financing, notional, exposure) by the timestamps of rows
    ``1..n``.

    ``equity`` is net (cash + positions at the close); ``gross_equity = equity + cumulative costs``;
    ``costs`` has columns ``spread``, ``impact``, ``fees`` in currency; ``financing`` the interest credited
    (negative: paid) each period on the book held since the previous close, in both curves, not a cost;
    ``trades`` one row per fill (timestamp, symbol, qty, price, ref, spread, impact, fees, notional); ``metrics`` and
    ``gross_metrics`` are :func:`performance_summary` of the net and the gross curve, their Sharpe and
    Sortino ratios in excess of ``risk_free`` (the per-period rate cash earned); ``folds`` optional per-fold
    metrics (walk-forward).
    """

    name: str
    equity: pd.Series
    gross_equity: pd.Series
    cash: pd.Series
    positions: pd.DataFrame
    targets: pd.DataFrame
    costs: pd.DataFrame
    financing: pd.Series
    traded_notional: pd.Series
    exposure: pd.Series
    trades: pd.DataFrame
    metrics: dict[str, float]
    gross_metrics: dict[str, float]
    periods_per_year: float
    initial_cash: float
    risk_free: float
    folds: pd.DataFrame | None = field(default=None)

    @property
    def total_costs(self) -> float:
        return float(self.costs.to_numpy().sum())

    def with_folds(self, folds: pd.DataFrame) -> BacktestResult:
        return dataclasses.replace(self, folds=folds)


def summarize(
    equity: FloatArray, costs: FloatArray, financing: FloatArray, notional: FloatArray, exposure: FloatArray,
    ppy: float, risk_free: float
) -> tuple[dict[str, float], dict[str, float]]:
    """Net and gross :func:`performance_summary` of one curve (``n + 1`` equity points, ``n x 3`` costs,
    ``n`` financing flows; ``risk_free`` per period), each with ``financing_total`` (currency)."""
    cost_map = {"spread": costs[:, 0], "impact": costs[:, 1], "fees": costs[:, 2]}
    net = performance_summary(equity, traded_notional=notional, costs=cost_map, exposure=exposure,
                              periods_per_year=ppy, risk_free=risk_free)
    gross_curve = gross_equity(equity, costs.sum(axis=1))
    gross = performance_summary(gross_curve, traded_notional=notional, costs={}, exposure=exposure,
                                periods_per_year=ppy, risk_free=risk_free)
    net["financing_total"] = gross["financing_total"] = float(financing.sum())
    return net, gross


def backtest(
    market: MarketArrays,
    params: ExecParams,
    targets: npt.ArrayLike,
    *,
    initial_cash: float,
    rng: np.random.Generator | int = 0,
    name: str = "strategy",
    targets_are_weights: bool = True,
    ppy: float | None = None,
) -> BacktestResult:
    """Execute ``targets`` (``T x N``, row ``t`` decided at bar ``t``'s close) on ``market`` and account
    for every fill. Targets are zeroed where :func:`decision_mask` forbids a position; NaN is an error."""
    T, N = market.open.shape
    if T < 2:
        raise EvaluationError(f"a backtest needs at least 2 bars, got {T}")
    if not initial_cash > 0:
        raise ConfigError(f"initial_cash={initial_cash}: must be > 0")
    values = np.array(targets, dtype=np.float64)
    if values.shape != (T, N):
        raise EvaluationError(f"targets have shape {values.shape}, market window is {(T, N)}")
    if not np.isfinite(values).all():
        raise EvaluationError(f"targets of {name!r} contain NaN or inf")
    values = np.where(decision_mask(market), values, 0.0)
    generator = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    seq = run_targets(market, params, values, generator, initial_cash=float(initial_cash),
                      targets_are_weights=targets_are_weights)
    ppy = market.frequency.periods_per_year if ppy is None else float(ppy)
    # The kernels credit cash at the nominal annual rate over each bar's calendar time: about exp(rate) a year.
    risk_free = math.expm1(float(params.values[P_CASH_RATE]) / ppy)
    costs = np.column_stack([seq.spread.sum(axis=1), seq.impact.sum(axis=1), seq.fee.sum(axis=1)])[1:]
    notional = seq.notional.sum(axis=1)[1:]
    financing = seq.financing[1:]
    with np.errstate(divide="ignore", invalid="ignore"):
        exposure = np.abs(seq.positions * market.mark).sum(axis=1) / np.abs(seq.equity)
    exposure = np.nan_to_num(exposure, nan=0.0, posinf=0.0)[1:]
    if (seq.equity <= 0).any():
        raise EvaluationError(f"backtest {name!r}: equity reached {seq.equity.min():.2f} <= 0 (ruin)")
    net, gross = summarize(seq.equity, costs, financing, notional, exposure, ppy, risk_free)
    ts = market.timestamps
    sym = list(market.symbols)
    gross_curve = gross_equity(seq.equity, costs.sum(axis=1))
    filled_t, filled_n = np.nonzero(seq.qty != 0.0)
    trades = pd.DataFrame({
        "timestamp": ts[filled_t], "symbol": np.asarray(sym, dtype=object)[filled_n],
        "qty": seq.qty[filled_t, filled_n], "price": seq.price[filled_t, filled_n],
        "ref": seq.ref[filled_t, filled_n], "spread": seq.spread[filled_t, filled_n],
        "impact": seq.impact[filled_t, filled_n], "fees": seq.fee[filled_t, filled_n],
        "notional": seq.notional[filled_t, filled_n],
    })
    last_rows = [np.flatnonzero(market.tradable[:, n]) for n in range(N)]
    ended = [s for n, s in enumerate(sym) if len(last_rows[n]) and last_rows[n][-1] < T - 1
             and abs(seq.positions[-1, n]) > 0]
    if ended:
        log.info("backtest name=%s positions in symbols=%s held after their data end, marked at their last close",
                 name, ",".join(ended))
    log.info("backtest name=%s bars=%d symbols=%d fills=%d net_return=%.4f gross_return=%.4f costs=%.2f "
             "financing=%.2f", name, T - 1, N, len(trades), net["total_return"], gross["total_return"],
             float(costs.sum()), float(financing.sum()))
    return BacktestResult(
        name=name,
        equity=pd.Series(seq.equity, index=ts, name="equity"),
        gross_equity=pd.Series(gross_curve, index=ts, name="gross_equity"),
        cash=pd.Series(seq.cash, index=ts, name="cash"),
        positions=pd.DataFrame(seq.positions, index=ts, columns=sym),
        targets=pd.DataFrame(values, index=ts, columns=sym),
        costs=pd.DataFrame(costs, index=ts[1:], columns=list(COST_COLUMNS)),
        financing=pd.Series(financing, index=ts[1:], name="financing"),
        traded_notional=pd.Series(notional, index=ts[1:], name="traded_notional"),
        exposure=pd.Series(exposure, index=ts[1:], name="exposure"),
        trades=trades,
        metrics=net,
        gross_metrics=gross,
        periods_per_year=ppy,
        initial_cash=float(initial_cash),
        risk_free=risk_free,
    )


def segment_metrics(result: BacktestResult, start: int, stop: int) -> tuple[dict[str, float], dict[str, float]]:
    """Net and gross metrics of the periods ``start+1 .. stop`` of a result (equity points ``start..stop``),
    e.g. one walk-forward fold of a stitched out-of-sample run."""
    n = len(result.equity) - 1
    if not 0 <= start < stop <= n:
        raise EvaluationError(f"segment [{start}, {stop}] outside the {n} periods of {result.name!r}")
    return summarize(result.equity.to_numpy()[start:stop + 1], result.costs.to_numpy()[start:stop],
                     result.financing.to_numpy()[start:stop], result.traded_notional.to_numpy()[start:stop],
                     result.exposure.to_numpy()[start:stop], result.periods_per_year, result.risk_free)
