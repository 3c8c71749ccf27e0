"""Performance metrics of a strategy from its per-period returns or its equity curve.

Definitions follow empyrical / quantstats, the field's reference libraries, so a number here can be
checked against them:

* ``returns`` are simple (not log) per-period returns, ``r_t = E_t / E_{t-1} - 1``.
* ``periods_per_year`` annualizes: 252 for daily bars, 52 weekly, 12 monthly, ``252 * 390`` for
  one-minute bars of a regular US session.
* Dispersion uses the sample standard deviation (``ddof=1``).
* ``risk_free`` is a per-period rate, as in empyrical (``risk_free`` there is a "constant daily
  risk-free return"). An annual rate converts with :func:`annual_to_period_rate`,
  ``(1 + r_annual) ** (1 / periods_per_year) - 1``, the conversion empyrical uses for thresholds.

NaN policy: invalid input (empty, not one-dimensional, NaN/inf, a return below -100 %) raises
:class:`~ai_trading.errors.EvaluationError`, because a metric computed on garbage looks like a metric.
A ratio whose value is undefined on valid input returns NaN: fewer than two observations for anything
built on a standard deviation, zero dispersion for the Sharpe ratio, no downside for the Sortino ratio,
no drawdown for the Calmar ratio, no non-zero period for the hit rate. empyrical returns NaN in the
0/0 cases and +-inf when only the denominator is zero; we return NaN in both so that a summary logged
to a tracker never carries an infinity that sorts a riskless backtest ahead of every real one.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import stats

from ai_trading.errors import EvaluationError

logger = logging.getLogger(__name__)

ReturnsLike = npt.ArrayLike | pd.Series
FloatArray = npt.NDArray[np.float64]

EULER_MASCHERONI = 0.5772156649015329
COST_COMPONENTS = ("spread", "impact", "fees")

__all__ = [
    "COST_COMPONENTS",
    "annual_to_period_rate",
    "annualized_return",
    "annualized_volatility",
    "calmar_ratio",
    "deflated_sharpe_ratio",
    "expected_max_sharpe",
    "gross_equity",
    "hit_rate",
    "max_drawdown",
    "max_drawdown_duration",
    "performance_summary",
    "probabilistic_sharpe_ratio",
    "returns_from_equity",
    "sharpe_ratio",
    "sortino_ratio",
    "total_return",
]


# ----------------------------------------------------------------------------------------------------
# input validation
# ----------------------------------------------------------------------------------------------------


def _as_1d(values: Any, name: str) -> FloatArray:
    try:
        arr = np.asarray(values.to_numpy() if isinstance(values, pd.Series) else values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise EvaluationError(f"{name}: cannot be read as float numbers ({exc})") from exc
    if arr.ndim != 1:
        raise EvaluationError(f"{name}: expected a one-dimensional series, got shape {arr.shape}")
    if arr.size == 0:
        raise EvaluationError(f"{name}: is empty")
    bad = ~np.isfinite(arr)
    if bad.any():
        raise EvaluationError(
            f"{name}: {int(bad.sum())} non-finite value(s), first at position {int(np.argmax(bad))}"
        )
    return arr


def _as_returns(returns: ReturnsLike) -> FloatArray:
    r = _as_1d(returns, "returns")
    if (r < -1.0).any():
        pos = int(np.argmax(r < -1.0))
        raise EvaluationError(f"returns: {r[pos]!r} at position {pos} is a loss of more than 100 %")
    return r


def _check_periods(periods_per_year: float) -> float:
    if not (math.isfinite(periods_per_year) and periods_per_year > 0):
        raise EvaluationError(f"periods_per_year must be a positive finite number, got {periods_per_year!r}")
    return float(periods_per_year)


def _std(x: FloatArray) -> float:
    """Sample standard deviation (ddof=1); exactly 0 when all values are equal, NaN below 2 values."""
    if x.size < 2:
        return math.nan
    if x.max() == x.min():  # avoid a 1e-18 residue of the float mean turning 0/0 into a number
        return 0.0
    return float(np.std(x, ddof=1))


# ----------------------------------------------------------------------------------------------------
# return metrics
# ----------------------------------------------------------------------------------------------------


def annual_to_period_rate(annual_rate: float, periods_per_year: float = 252) -> float:
    """Convert an annual rate to the per-period rate that compounds to it.

    ``(1 + annual_rate) ** (1 / periods_per_year) - 1``, the conversion empyrical applies to annual
    thresholds. Use it to pass an annual risk-free rate to :func:`sharpe_ratio`.
    """
    ppy = _check_periods(periods_per_year)
    if not (math.isfinite(annual_rate) and annual_rate > -1.0):
        raise EvaluationError(f"annual_rate must be finite and above -1, got {annual_rate!r}")
    return float((1.0 + annual_rate) ** (1.0 / ppy) - 1.0)


def total_return(returns: ReturnsLike) -> float:
    """Compounded return over the whole series: ``prod(1 + r) - 1`` (empyrical ``cum_returns_final``)."""
    r = _as_returns(returns)
    return float(np.prod(1.0 + r) - 1.0)


def annualized_return(returns: ReturnsLike, periods_per_year: float = 252) -> float:
    """Compound annual growth rate: ``prod(1 + r) ** (periods_per_year / n) - 1``.

    Same as empyrical ``annual_return`` (CAGR), with ``n / periods_per_year`` years. A series that
    loses everything (final wealth 0) returns -1.
    """
    r = _as_returns(returns)
    ppy = _check_periods(periods_per_year)
    wealth = float(np.prod(1.0 + r))
    if wealth <= 0.0:
        return -1.0
    return float(wealth ** (ppy / r.size) - 1.0)


def annualized_volatility(returns: ReturnsLike, periods_per_year: float = 252) -> float:
    """Annualized volatility: ``std(r, ddof=1) * sqrt(periods_per_year)``; NaN below 2 observations."""
    r = _as_returns(returns)
    ppy = _check_periods(periods_per_year)
    return _std(r) * math.sqrt(ppy)


def sharpe_ratio(returns: ReturnsLike, periods_per_year: float = 252, risk_free: float = 0.0) -> float:
    """Annualized Sharpe ratio: ``mean(r - rf) / std(r - rf, ddof=1) * sqrt(periods_per_year)``.

    ``risk_free`` is per period (see module docstring). This is empyrical's ``sharpe_ratio``. NaN
    below two observations and when the excess returns have zero dispersion (empyrical: +-inf when
    the mean is not zero), because a ratio over a zero risk is not a comparable number.
    """
    r = _as_returns(returns)
    ppy = _check_periods(periods_per_year)
    excess = r - float(risk_free)
    sd = _std(excess)
    if not sd > 0.0:
        return math.nan
    return float(np.mean(excess) / sd * math.sqrt(ppy))


def sortino_ratio(returns: ReturnsLike, periods_per_year: float = 252, required_return: float = 0.0) -> float:
    """Annualized Sortino ratio: ``mean(r - T) * ppy / (sqrt(mean(min(r - T, 0) ** 2)) * sqrt(ppy))``.

    ``T`` is the per-period ``required_return`` (minimum acceptable return). The downside deviation
    is the target semi-deviation over all ``n`` periods (no ddof), as in empyrical ``downside_risk``
    and Sortino's own definition; it is not the standard deviation of the negative returns. NaN
    below two observations (as empyrical) and when no period falls below the target (empyrical: inf).
    """
    r = _as_returns(returns)
    ppy = _check_periods(periods_per_year)
    if r.size < 2:
        return math.nan
    adj = r - float(required_return)
    downside = math.sqrt(float(np.mean(np.minimum(adj, 0.0) ** 2))) * math.sqrt(ppy)
    if not downside > 0.0:
        return math.nan
    return float(np.mean(adj) * ppy / downside)


def _wealth(r: FloatArray) -> FloatArray:
    """Wealth path anchored at 1 before the first period (the anchor counts as a peak, as in empyrical)."""
    return np.concatenate(([1.0], np.cumprod(1.0 + r)))


def _underwater(r: FloatArray) -> FloatArray:
    w = _wealth(r)
    peak = np.maximum.accumulate(w)
    return np.asarray(1.0 - w / peak, dtype=np.float64)


def max_drawdown(returns: ReturnsLike) -> float:
    """Maximum drawdown as a positive fraction: ``max_t (1 - W_t / max_{s<=t} W_s)``.

    ``W`` is the compounded wealth path starting at 1 before the first period, so a first-period loss
    is a drawdown. empyrical returns the same number with a negative sign; 0.25 here means the
    equity fell 25 % below its running peak at worst.
    """
    return float(_underwater(_as_returns(returns)).max())


def max_drawdown_duration(returns: ReturnsLike) -> int:
    """Longest time under water, in periods: the most consecutive periods with wealth below its peak.

    A drawdown lasts from the first period below the previous peak until the period that regains the
    peak (that period excluded) or the end of the series if it never recovers. Counted in periods,
    not calendar days (quantstats counts days), so it does not depend on a calendar; multiply by the
    bar length for a time.
    """
    under = _underwater(_as_returns(returns))[1:] > 0.0
    longest = current = 0
    for flag in under:
        current = current + 1 if flag else 0
        longest = max(longest, current)
    return longest


def calmar_ratio(returns: ReturnsLike, periods_per_year: float = 252) -> float:
    """Calmar ratio: annualized return (CAGR) over maximum drawdown, both over the whole series.

    empyrical's ``calmar_ratio``. NaN when there is no drawdown (empyrical does the same).
    """
    r = _as_returns(returns)
    mdd = max_drawdown(r)
    if not mdd > 0.0:
        return math.nan
    return annualized_return(r, periods_per_year) / mdd


def hit_rate(returns: ReturnsLike) -> float:
    """Share of winning periods among periods with a non-zero return (quantstats ``win_rate``).

    Flat periods (no position, no cost) are neither wins nor losses. NaN when every return is zero.
    """
    r = _as_returns(returns)
    active = r != 0.0
    if not active.any():
        return math.nan
    return float(np.count_nonzero(r > 0.0) / np.count_nonzero(active))


# ----------------------------------------------------------------------------------------------------
# PSR / DSR
# ----------------------------------------------------------------------------------------------------


def probabilistic_sharpe_ratio(
    returns: ReturnsLike, benchmark_sharpe: float = 0.0, risk_free: float = 0.0
) -> float:
    """Probabilistic Sharpe Ratio (Bailey and Lopez de Prado, 2012): ``P[SR_true > SR*]``.

    ``PSR = Phi((SR - SR*) * sqrt(n - 1) / sqrt(1 - g3 * SR + (g4 - 1) / 4 * SR ** 2))`` where ``SR``
    is the *per-period* (not annualized) Sharpe ratio of the excess returns (sample std, ddof=1),
    ``g3`` the skewness and ``g4`` the (non-excess) kurtosis of the returns, both the plain moment
    estimators (scipy ``skew`` / ``kurtosis(fisher=False)`` with ``bias=True``), and ``n`` the number of
    observations. ``benchmark_sharpe`` (``SR*``) is per period too: divide an annualized target by
    ``sqrt(periods_per_year)``. It tells how likely the Sharpe ratio is above the benchmark given the
    track record's length and its non-normality. NaN when the Sharpe ratio is undefined.
    """
    r = _as_returns(returns)
    excess = r - float(risk_free)
    sd = _std(excess)
    if r.size < 3 or not sd > 0.0:
        return math.nan
    sr = float(np.mean(excess) / sd)
    skew = float(stats.skew(r, bias=True))
    kurt = float(stats.kurtosis(r, fisher=False, bias=True))
    var_term = 1.0 - skew * sr + (kurt - 1.0) / 4.0 * sr**2
    if not var_term > 0.0:
        logger.warning("psr_nonpositive_variance skew=%s kurtosis=%s sharpe=%s", skew, kurt, sr)
        return math.nan
    z = (sr - float(benchmark_sharpe)) * math.sqrt(r.size - 1) / math.sqrt(var_term)
    return float(stats.norm.cdf(z))


def expected_max_sharpe(n_trials: int, trials_sharpe_variance: float) -> float:
    """Expected maximum of ``n_trials`` Sharpe ratios whose true value is zero (False Strategy Theorem).

    ``SR0 = sqrt(V) * ((1 - gamma) * Phi^-1(1 - 1/N) + gamma * Phi^-1(1 - 1/(N e)))`` with ``gamma`` the
    Euler-Mascheroni constant and ``V`` the variance of the trials' Sharpe ratios (Bailey and Lopez de
    Prado, 2014). ``V`` must be in the units of the Sharpe ratio compared with it (per period for
    :func:`deflated_sharpe_ratio`: an annualized variance divides by ``periods_per_year``). One trial
    has no selection bias: 0.
    """
    if int(n_trials) != n_trials or n_trials < 1:
        raise EvaluationError(f"n_trials must be a positive integer, got {n_trials!r}")
    if not (math.isfinite(trials_sharpe_variance) and trials_sharpe_variance >= 0.0):
        raise EvaluationError(
            f"trials_sharpe_variance must be finite and >= 0, got {trials_sharpe_variance!r}"
        )
    if n_trials == 1:
        return 0.0
    n = float(n_trials)
    quantiles = (1.0 - EULER_MASCHERONI) * stats.norm.ppf(1.0 - 1.0 / n) + EULER_MASCHERONI * stats.norm.ppf(
        1.0 - 1.0 / (n * math.e)
    )
    return float(math.sqrt(trials_sharpe_variance) * quantiles)


def deflated_sharpe_ratio(
    returns: ReturnsLike, n_trials: int, trials_sharpe_variance: float, risk_free: float = 0.0
) -> float:
    """Deflated Sharpe Ratio (Bailey and Lopez de Prado, 2014): the PSR against the expected maximum.

    ``DSR = PSR(SR0)`` with ``SR0 = expected_max_sharpe(n_trials, trials_sharpe_variance)``: the
    probability that the selected strategy's Sharpe ratio is real after correcting for having kept the
    best of ``n_trials`` backtests. ``trials_sharpe_variance`` is the variance of the per-period
    (non-annualized) Sharpe ratios across the trials.
    """
    sr0 = expected_max_sharpe(n_trials, trials_sharpe_variance)
    return probabilistic_sharpe_ratio(returns, benchmark_sharpe=sr0, risk_free=risk_free)


# ----------------------------------------------------------------------------------------------------
# equity curves and the backtest summary
# ----------------------------------------------------------------------------------------------------


def returns_from_equity(equity: ReturnsLike) -> FloatArray:
    """Simple per-period returns ``E_t / E_{t-1} - 1`` of an equity curve (one fewer than points).

    Equity must be strictly positive: a curve at or below zero has no defined return afterwards.
    """
    e = _as_1d(equity, "equity")
    if e.size < 2:
        raise EvaluationError(f"equity: need at least 2 points to form a return, got {e.size}")
    if (e <= 0.0).any():
        pos = int(np.argmax(e <= 0.0))
        raise EvaluationError(f"equity: non-positive value {e[pos]!r} at position {pos}")
    return np.asarray(e[1:] / e[:-1] - 1.0, dtype=np.float64)


def gross_equity(equity: ReturnsLike, period_costs: ReturnsLike) -> FloatArray:
    """Equity before costs: net equity plus the costs paid so far.

    ``equity[0]`` is the capital before the first period and ``period_costs[t]`` (currency, >= 0) the
    total cost paid during period ``t + 1``, so ``len(period_costs) == len(equity) - 1`` and
    ``gross[t] = equity[t] + sum(period_costs[:t])``. Costs are not compounded: the gross curve is
    what the same trades would have been worth without paying them.
    """
    e = _as_1d(equity, "equity")
    c = _as_1d(period_costs, "period_costs")
    if c.size != e.size - 1:
        raise EvaluationError(
            f"period_costs: length {c.size} does not match equity length {e.size} - 1 (one cost per period)"
        )
    return np.asarray(e + np.concatenate(([0.0], np.cumsum(c))), dtype=np.float64)


def _per_period(values: ReturnsLike, name: str, n: int) -> FloatArray:
    arr = _as_1d(values, name)
    if arr.size != n:
        raise EvaluationError(f"{name}: length {arr.size} does not match the {n} periods of the equity curve")
    return arr


def performance_summary(
    equity: ReturnsLike,
    *,
    traded_notional: ReturnsLike,
    costs: Mapping[str, ReturnsLike],
    exposure: ReturnsLike,
    periods_per_year: float = 252,
    risk_free: float = 0.0,
    initial_equity: float | None = None,
) -> dict[str, float]:
    """Every metric of one backtest, as a flat ``dict[str, float]`` ready to log (e.g. under ``pnl/``).

    Inputs, one value per period ``t = 1..n``:

    * ``equity``: net equity (after costs) marked at the end of each period. If ``initial_equity`` is
      None, ``equity[0]`` is the capital before the first period and the curve has ``n + 1`` points;
      otherwise the curve has ``n`` points and ``initial_equity`` is prepended.
    * ``traded_notional``: absolute traded notional in currency (sum of ``|qty * price|`` of fills).
    * ``costs``: per-period costs in currency by component; keys among ``spread``, ``impact``,
      ``fees`` (missing ones count as zero, others are rejected).
    * ``exposure``: gross exposure as a fraction of equity (``sum |position value| / equity``).

    Keys: ``total_return``, ``annualized_return``, ``gross_total_return``,
    ``gross_annualized_return`` (from :func:`gross_equity`), ``annualized_volatility``, ``sharpe``,
    ``sortino``, ``calmar``, ``max_drawdown`` (positive fraction), ``max_drawdown_duration``
    (periods), ``hit_rate``, ``turnover`` (annualized: ``sum(traded_notional) / mean(equity) *
    periods_per_year / n``, equity averaged over the ``n`` end-of-period marks), ``exposure`` (mean
    gross exposure), ``time_in_market`` (share of periods with non-zero exposure), ``traded_notional``,
    ``cost_<component>`` and ``cost_total`` in currency, ``cost_<component>_bps`` and ``cost_bps``
    in basis points of traded notional (NaN if nothing traded), ``n_periods``, ``periods_per_year``.
    """
    ppy = _check_periods(periods_per_year)
    e = _as_1d(equity, "equity")
    if initial_equity is not None:
        e = np.concatenate(([float(initial_equity)], e))
    r = returns_from_equity(e)
    n = r.size
    notional = _per_period(traded_notional, "traded_notional", n)
    expo = _per_period(exposure, "exposure", n)
    if (notional < 0.0).any() or (expo < 0.0).any():
        raise EvaluationError("traded_notional and exposure are absolute amounts and must be >= 0")
    unknown = set(costs) - set(COST_COMPONENTS)
    if unknown:
        raise EvaluationError(
            f"costs: unknown component(s) {sorted(unknown)}; expected {list(COST_COMPONENTS)}"
        )
    comp = {
        k: _per_period(costs[k], f"costs[{k!r}]", n) if k in costs else np.zeros(n) for k in COST_COMPONENTS
    }
    total_costs = np.sum(np.vstack(list(comp.values())), axis=0)
    gross_r = returns_from_equity(gross_equity(e, total_costs))
    notional_sum = float(notional.sum())
    out: dict[str, float] = {
        "total_return": total_return(r),
        "annualized_return": annualized_return(r, ppy),
        "gross_total_return": total_return(gross_r),
        "gross_annualized_return": annualized_return(gross_r, ppy),
        "annualized_volatility": annualized_volatility(r, ppy),
        "sharpe": sharpe_ratio(r, ppy, risk_free),
        "sortino": sortino_ratio(r, ppy, risk_free),
        "calmar": calmar_ratio(r, ppy),
        "max_drawdown": max_drawdown(r),
        "max_drawdown_duration": float(max_drawdown_duration(r)),
        "hit_rate": hit_rate(r),
        "turnover": notional_sum / float(np.mean(e[1:])) * ppy / n,
        "exposure": float(np.mean(expo)),
        "time_in_market": float(np.count_nonzero(expo > 0.0) / n),
        "traded_notional": notional_sum,
    }
    for k, v in comp.items():
        out[f"cost_{k}"] = float(v.sum())
    out["cost_total"] = float(total_costs.sum())
    for k in (*COST_COMPONENTS, "total"):
        bps = out[f"cost_{k}"] / notional_sum * 1e4 if notional_sum > 0.0 else math.nan
        out["cost_bps" if k == "total" else f"cost_{k}_bps"] = bps
    out["n_periods"] = float(n)
    out["periods_per_year"] = ppy
    logger.debug(
        "performance_summary n_periods=%d sharpe=%s max_drawdown=%s", n, out["sharpe"], out["max_drawdown"]
    )
    return out
