"""When a decision trades and what a held position earns: the timing rule of the vectorised execution
paths, in one place for the backtest kernels and the ML labels.

Rows are the rows of :class:`~ai_trading.execution.MarketArrays`. A target decided at row ``t`` (at bar
``t``'s close) executes on row ``t + 1`` (:func:`execution_row`, as
:func:`~ai_trading.execution.kernels.run_sequence` and ``step_batch`` do), at that bar's open plus the
latency along the bar path; the open is the arrival price (:func:`arrival_prices`). A position decided
at row ``t`` and held for ``h`` bars (targets at rows ``t .. t+h-1``, flat decided at row ``t+h``) is
bought at ``open(t+1)`` and sold at ``open(t+h+1)``, the row where its return is complete
(:func:`holding_end_row`). Without costs and latency it earns ``log(open(t+h+1) / open(t+1))``
(:func:`holding_log_returns`), the overnight gap after ``t``'s close included and the one after
``t+h``'s close excluded; a close-to-close return is not what the trade earns.

The kernels trade a symbol only on a row where it has a bar, and the backtest zeroes a target on a row
where the symbol has none (:func:`~ai_trading.evaluation.backtest.decision_mask`), which flattens a held
position. So the holding return is defined only where the symbol has a bar on every row ``t .. t+h+1``.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from ai_trading.errors import ConfigError

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]

EXECUTION_LAG = 1  # rows between a decision and its execution


def execution_row(t: int) -> int:
    """The row a target decided at row ``t``'s close executes on."""
    return t + EXECUTION_LAG


def holding_end_row(t: int, horizon: int) -> int:
    """The row whose open closes a position decided at row ``t`` and held for ``horizon`` bars."""
    return execution_row(t) + horizon


def arrival_prices(open_: FloatArray) -> FloatArray:
    """Arrival price of a decision at every row ``t`` but the last: ``open(t+1)`` (``(T-1) x N``)."""
    return open_[EXECUTION_LAG:]


def holding_log_returns(open_: FloatArray, tradable: npt.NDArray[np.bool_],
                        horizon: int) -> tuple[FloatArray, IntArray]:
    """Per decision row ``t`` and symbol: the log return ``log(open(t+h+1) / open(t+1))`` of a position
    decided at ``t`` and held ``h = horizon`` bars, and the row where it ends (``t+h+1``).

    NaN and end ``-1`` where the return is not what a held position earns: the end is past the data, or
    the symbol misses a bar on some row ``t .. t+h+1`` (``open_`` and ``tradable`` are ``T x N``).
    """
    if horizon < 1:
        raise ConfigError(f"holding horizon={horizon}: must be >= 1 bar")
    T, N = open_.shape
    y = np.full((T, N), np.nan)
    end = np.full((T, N), -1, dtype=np.intp)
    span = holding_end_row(0, horizon) + 1  # rows t .. t+h+1
    if span > T:
        return y, end
    counts = np.cumsum(np.vstack([np.zeros((1, N), dtype=np.intp), tradable.astype(np.intp)]), axis=0)
    rows = T - span + 1  # decision rows whose end is inside the data
    whole = (counts[span:] - counts[:rows]) == span
    entry = arrival_prices(open_)[:rows]
    exit_ = open_[holding_end_row(0, horizon):]
    with np.errstate(divide="ignore", invalid="ignore"):
        ret = np.log(exit_ / entry)
    valid = whole & np.isfinite(ret)
    y[:rows] = np.where(valid, ret, np.nan)
    end[:rows] = np.where(valid, np.arange(rows)[:, None] + holding_end_row(0, horizon), -1)
    return y, end
