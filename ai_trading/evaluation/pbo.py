"""Probability of Backtest Overfitting (PBO) by combinatorially symmetric cross-validation (CSCV).

Bailey, Borwein, Lopez de Prado and Zhu (2015), "The Probability of Backtest Overfitting". Given the
returns of M strategy configurations (or seeds) over the same T periods:

1. Cut the rows into S contiguous submatrices of equal size (S even). When S does not divide T, the
   ``T mod S`` oldest rows are dropped (as pypbo does) so every submatrix has the same length.
2. For each of the ``C(S, S/2)`` ways to pick S/2 submatrices: the picked rows (in time order) form
   the in-sample set J, the others the out-of-sample set J-bar.
3. Pick the configuration ``n*`` with the best in-sample performance (the first on ties), find its
   relative rank ``w = rank_oos(n*) / (M + 1)`` among the out-of-sample performances (average rank on
   ties, 1 = worst) and its logit ``lambda = ln(w / (1 - w))``.
4. ``PBO = share of combinations with lambda <= 0``: how often the in-sample winner ends at or below
   the out-of-sample median. A configuration that truly dominates gives about 0. Under pure noise the
   winner's out-of-sample rank is uniform on ``1..M`` and ``lambda <= 0`` means ``rank <= (M + 1) / 2``,
   which holds for ``ceil(M / 2)`` of the M ranks: PBO is about 0.5 for an even M but
   ``(M + 1) / (2 M)`` for an odd M (0.6 for M = 5, 2/3 for M = 3), because the median rank itself
   counts as overfit.

The performance measure defaults to the per-period Sharpe ratio (mean / sample std, ddof=1; a
monotone rescaling such as annualizing changes no rank). A NaN performance (zero dispersion) ranks
below every number.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from ai_trading.errors import EvaluationError

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
PerformanceFn = Callable[[FloatArray], npt.ArrayLike]

__all__ = ["PBOResult", "probability_of_backtest_overfitting"]


@dataclass(frozen=True)
class PBOResult:
    """Outcome of CSCV, one entry per combination in the array fields (``itertools.combinations`` order).

    ``pbo``: share of logits ``<= 0``. ``logits``: the logit distribution. ``relative_ranks``: the
    out-of-sample relative rank ``w`` of the in-sample winner. ``best_in_sample``: its column.
    ``is_performance`` / ``oos_performance``: its in-sample and out-of-sample performance (their
    regression is the paper's performance degradation). ``prob_oos_loss``: share of combinations where
    the winner's out-of-sample performance is below 0.
    """

    pbo: float
    logits: FloatArray
    relative_ranks: FloatArray
    best_in_sample: npt.NDArray[np.intp]
    is_performance: FloatArray
    oos_performance: FloatArray
    prob_oos_loss: float
    n_submatrices: int
    n_rows_used: int


def _block_sharpes(blocks: FloatArray, combos: npt.NDArray[np.bool_]) -> tuple[FloatArray, FloatArray]:
    """Per-period Sharpe of every strategy on J and on J-bar for all combinations at once.

    Sums and sums of squares per submatrix are added up per combination; the data are centred per
    column first so the variance does not lose precision to cancellation.
    """
    S, rows, _ = blocks.shape
    centre = blocks.reshape(S * rows, -1).mean(axis=0)
    x = blocks - centre
    sums = x.sum(axis=1)  # (S, M)
    sumsq = (x**2).sum(axis=1)
    out = []
    for sel in (combos, ~combos):
        w = sel.astype(np.float64)
        n = w.sum(axis=1, keepdims=True) * rows
        mean_c = (w @ sums) / n
        var = ((w @ sumsq) - n * mean_c**2) / (n - 1)
        sd = np.sqrt(np.maximum(var, 0.0))
        with np.errstate(divide="ignore", invalid="ignore"):
            sr = np.where(sd > 1e-14 * (np.abs(mean_c + centre) + 1e-300), (mean_c + centre) / sd, np.nan)
        out.append(np.asarray(sr, dtype=np.float64))
    return out[0], out[1]


def _custom_performance(
    blocks: FloatArray, combos: npt.NDArray[np.bool_], fn: PerformanceFn
) -> tuple[FloatArray, FloatArray]:
    M = blocks.shape[2]
    res = []
    for sel in (combos, ~combos):
        perf = np.empty((combos.shape[0], M), dtype=np.float64)
        for c, picked in enumerate(sel):
            value = np.asarray(fn(np.concatenate(blocks[picked], axis=0)), dtype=np.float64)
            if value.shape != (M,):
                raise EvaluationError(f"performance function returned shape {value.shape}, expected ({M},)")
            perf[c] = value
        res.append(perf)
    return res[0], res[1]


def probability_of_backtest_overfitting(
    returns: npt.ArrayLike | pd.DataFrame,
    n_submatrices: int = 16,
    performance: PerformanceFn | None = None,
) -> PBOResult:
    """PBO of choosing the best of M configurations, from their T x M matrix of per-period returns.

    ``n_submatrices`` is S (even, >= 2; the paper uses 16, which means 12 870 combinations).
    ``performance`` maps a ``(rows, M)`` array to M scores (higher is better); None is the per-period
    Sharpe ratio, computed for all combinations at once. See the module docstring for the procedure.
    """
    mat = np.asarray(returns.to_numpy() if isinstance(returns, pd.DataFrame) else returns, dtype=np.float64)
    if mat.ndim != 2:
        raise EvaluationError(f"returns must be a T x M matrix, got shape {mat.shape}")
    T, M = mat.shape
    if M < 2:
        raise EvaluationError(f"need at least 2 configurations (columns) to select from, got {M}")
    if not np.isfinite(mat).all():
        raise EvaluationError("returns contain NaN or inf")
    S = n_submatrices
    if not (isinstance(S, int | np.integer) and S >= 2 and S % 2 == 0):
        raise EvaluationError(f"n_submatrices must be an even integer >= 2, got {S!r}")
    rows = T // S
    if rows < 1 or rows * S // 2 < 2:
        raise EvaluationError(f"too few observations: {T} rows for {S} submatrices")
    dropped = T - rows * S
    if dropped:
        logger.info("pbo_rows_dropped n_dropped=%d reason=T_not_multiple_of_S T=%d S=%d", dropped, T, S)
    blocks = mat[dropped:].reshape(S, rows, M)

    combos = np.zeros((math.comb(S, S // 2), S), dtype=bool)
    for c, picked in enumerate(itertools.combinations(range(S), S // 2)):
        combos[c, list(picked)] = True

    if performance is None:
        is_perf, oos_perf = _block_sharpes(blocks, combos)
    else:
        is_perf, oos_perf = _custom_performance(blocks, combos, performance)
    is_rank_basis = np.where(np.isnan(is_perf), -np.inf, is_perf)
    oos_basis = np.where(np.isnan(oos_perf), -np.inf, oos_perf)

    n_combos = combos.shape[0]
    best = np.argmax(is_rank_basis, axis=1).astype(np.intp)
    chosen = oos_basis[np.arange(n_combos), best][:, None]
    # average rank, 1 = worst: (number strictly below) + (number tied incl. itself + 1) / 2
    rank = (oos_basis < chosen).sum(axis=1) + ((oos_basis == chosen).sum(axis=1) + 1) / 2.0
    w = rank / (M + 1)
    logits = np.log(w / (1.0 - w))
    chosen_oos = oos_perf[np.arange(n_combos), best]
    result = PBOResult(
        pbo=float(np.mean(logits <= 0.0)),
        logits=np.asarray(logits, dtype=np.float64),
        relative_ranks=np.asarray(w, dtype=np.float64),
        best_in_sample=best,
        is_performance=np.asarray(is_perf[np.arange(n_combos), best], dtype=np.float64),
        oos_performance=np.asarray(chosen_oos, dtype=np.float64),
        prob_oos_loss=float(np.mean(np.nan_to_num(chosen_oos, nan=0.0) < 0.0)),
        n_submatrices=int(S),
        n_rows_used=rows * S,
    )
    logger.debug("pbo_done pbo=%.4f n_combinations=%d M=%d T=%d", result.pbo, n_combos, M, T)
    return result
