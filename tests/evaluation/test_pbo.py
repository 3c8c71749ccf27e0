"""Probability of Backtest Overfitting via CSCV."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from ai_trading.errors import EvaluationError
from ai_trading.evaluation import probability_of_backtest_overfitting as pbo


def test_hand_case_in_sample_winner_always_loses_out_of_sample() -> None:
    # S = 2, blocks of 2 rows. A is good in block 0 and bad in block 1; B the reverse.
    # Each of the C(2,1) = 2 combinations picks the in-sample winner, which is last of 2 out of sample:
    # rank 1 -> w = 1 / (M + 1) = 1/3 -> logit ln(1/2) < 0 -> PBO = 1.
    m = np.array([[0.02, -0.01], [0.04, -0.03], [-0.01, 0.02], [-0.03, 0.04]])
    res = pbo(m, n_submatrices=2)
    assert res.pbo == 1.0
    np.testing.assert_allclose(res.relative_ranks, [1 / 3, 1 / 3])
    np.testing.assert_allclose(res.logits, [math.log(0.5)] * 2)
    np.testing.assert_array_equal(res.best_in_sample, [0, 1])
    assert res.prob_oos_loss == 1.0


def test_hand_case_dominant_strategy_wins_both_halves() -> None:
    # A beats B in both blocks: winner ranks 2 of 2 out of sample -> w = 2/3, logit ln 2 > 0 -> PBO = 0
    m = np.array([[0.02, -0.01], [0.04, -0.03], [0.03, 0.01], [0.01, -0.02]])
    res = pbo(pd.DataFrame(m), n_submatrices=2)
    assert res.pbo == 0.0
    np.testing.assert_allclose(res.logits, [math.log(2)] * 2)


@pytest.mark.parametrize("n_strategies", [4, 5])
def test_pure_noise_pbo_is_share_of_ranks_at_or_below_the_median(n_strategies: int) -> None:
    # with no skill the winner's out-of-sample rank is uniform on 1..M and lambda <= 0 counts the ranks
    # r <= (M + 1) / 2: M/2 of M for even M (0.5), (M + 1) / 2 of M for odd M (0.6 for M = 5).
    # single matrices scatter widely (combinations share data), so average over 400 matrices
    # (standard error about 0.013, so 0.5 and 0.6 are told apart).
    expected = math.ceil(n_strategies / 2) / n_strategies
    values = [pbo(np.random.default_rng(seed).normal(0, 0.01, (240, n_strategies)), 8).pbo for seed in range(400)]
    assert np.mean(values) == pytest.approx(expected, abs=0.04)


def test_dominating_strategy_gives_pbo_near_zero() -> None:
    rng = np.random.default_rng(1)
    m = rng.normal(0, 0.01, (480, 20))
    m[:, 7] += 0.004  # per-period Sharpe about 0.4 against 0 for the rest
    res = pbo(m, 16)
    assert res.pbo < 0.05
    assert np.mean(res.best_in_sample == 7) > 0.95
    assert res.logits.shape == (math.comb(16, 8),)


def _loop_sharpe(x: np.ndarray) -> np.ndarray:
    """Per-column mean / sample std with explicit sums, independent of the vectorised default."""
    out = []
    for col in x.T:
        n = len(col)
        mean = sum(col) / n
        sd = math.sqrt(sum((v - mean) ** 2 for v in col) / (n - 1))
        out.append(mean / sd)
    return np.array(out)


def test_default_sharpe_matches_explicit_performance_function() -> None:
    m = np.random.default_rng(5).normal(0.0002, 0.01, (60, 5))
    fast = pbo(m, 6)
    slow = pbo(m, 6, performance=_loop_sharpe)
    assert fast.pbo == slow.pbo
    np.testing.assert_allclose(fast.logits, slow.logits)
    np.testing.assert_allclose(fast.is_performance, slow.is_performance, rtol=1e-9)
    np.testing.assert_allclose(fast.oos_performance, slow.oos_performance, rtol=1e-9)


def test_relative_rank_matches_rank_of_selected_strategy() -> None:
    m = np.random.default_rng(2).normal(0, 0.01, (80, 7))
    res = pbo(m, 4, performance=_loop_sharpe)
    blocks = m.reshape(4, 20, 7)
    from itertools import combinations

    for c, picked in enumerate(combinations(range(4), 2)):
        rest = [b for b in range(4) if b not in picked]
        is_perf = _loop_sharpe(np.concatenate(blocks[list(picked)]))
        oos_perf = _loop_sharpe(np.concatenate(blocks[rest]))
        best = int(np.argmax(is_perf))
        rank = 1 + sum(v < oos_perf[best] for v in oos_perf)  # no ties in continuous data
        assert res.best_in_sample[c] == best
        assert res.relative_ranks[c] == pytest.approx(rank / 8)


def test_rows_not_divisible_by_s_drop_the_oldest() -> None:
    m = np.random.default_rng(3).normal(0, 0.01, (43, 4))
    res = pbo(m, 4)
    assert res.n_rows_used == 40
    np.testing.assert_allclose(res.logits, pbo(m[3:], 4).logits)


@pytest.mark.parametrize(
    ("matrix", "s"),
    [
        (np.zeros((40, 3)), 3),  # odd S
        (np.zeros((40, 3)), 0),
        (np.zeros((40, 1)), 4),  # one configuration
        (np.zeros(40), 4),  # not a matrix
        (np.full((40, 3), np.nan), 4),
        (np.zeros((3, 3)), 4),  # fewer rows than submatrices
    ],
)
def test_invalid_input_raises(matrix: np.ndarray, s: int) -> None:
    with pytest.raises(EvaluationError):
        pbo(matrix, s)
