"""Metrics against hand-worked values and against empyrical (an independent implementation)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from ai_trading.errors import EvaluationError
from ai_trading.evaluation import metrics as m

empyrical = pytest.importorskip("empyrical")

# r = [0.02, 0.00, 0.04, -0.02]
#   mean = 0.01; deviations +0.01, -0.01, +0.03, -0.03; sum of squares = 0.002
#   sample variance = 0.002 / 3, std = sqrt(0.002 / 3) = 0.0258199
#   Sharpe (ppy 252) = 0.01 / sqrt(0.002/3) * sqrt(252) = sqrt(0.15) * sqrt(252) = sqrt(37.8) = 6.1481705
#   volatility (ppy 252) = sqrt(0.002 / 3 * 252) = sqrt(0.168) = 0.4098780
#   downside: min(r, 0) = [0, 0, 0, -0.02]; mean of squares = 0.0004 / 4 = 0.0001; sqrt = 0.01
#   Sortino (ppy 1) = 0.01 / 0.01 = 1; (ppy 252) = 0.01 * 252 / (0.01 * sqrt(252)) = sqrt(252)
#   wealth 1, 1.02, 1.02, 1.0608, 1.039584 -> total return 0.039584, max drawdown 1 - 0.98 = 0.02 (1 period)
#   CAGR with ppy 4 (exactly one year) = total return = 0.039584; Calmar = 0.039584 / 0.02 = 1.9792
#   hit rate: 2 wins among 3 non-zero periods = 2/3
HAND = np.array([0.02, 0.00, 0.04, -0.02])


def test_sharpe_hand_series_matches_worked_value() -> None:
    assert m.sharpe_ratio(HAND, periods_per_year=252) == pytest.approx(math.sqrt(37.8), rel=1e-12)


def test_sharpe_risk_free_is_per_period_and_subtracted() -> None:
    # excess = r - 0.01 = [0.01, -0.01, 0.03, -0.03]: mean 0, so Sharpe 0
    assert m.sharpe_ratio(HAND, risk_free=0.01) == pytest.approx(0.0, abs=1e-12)


def test_volatility_hand_series_matches_worked_value() -> None:
    assert m.annualized_volatility(HAND, periods_per_year=252) == pytest.approx(math.sqrt(0.168), rel=1e-12)


def test_sortino_hand_series_matches_worked_value() -> None:
    assert m.sortino_ratio(HAND, periods_per_year=1) == pytest.approx(1.0, rel=1e-12)
    assert m.sortino_ratio(HAND, periods_per_year=252) == pytest.approx(math.sqrt(252), rel=1e-12)


def test_return_drawdown_calmar_hit_rate_hand_series() -> None:
    assert m.total_return(HAND) == pytest.approx(0.039584, rel=1e-12)
    assert m.annualized_return(HAND, periods_per_year=4) == pytest.approx(0.039584, rel=1e-12)
    # ppy 2: two years -> sqrt(1.039584) - 1
    assert m.annualized_return(HAND, periods_per_year=2) == pytest.approx(math.sqrt(1.039584) - 1, rel=1e-12)
    assert m.max_drawdown(HAND) == pytest.approx(0.02, rel=1e-12)
    assert m.max_drawdown_duration(HAND) == 1
    assert m.calmar_ratio(HAND, periods_per_year=4) == pytest.approx(1.9792, rel=1e-12)
    assert m.hit_rate(HAND) == pytest.approx(2 / 3)


def test_drawdown_duration_counts_longest_underwater_spell_to_end() -> None:
    # wealth 1, 1.1, 0.99, 1.0395, 1.10187 (new peak > 1.1), 0.550935, 0.6060285, 0.66663135
    # spells below the peak: periods 2-3 (2 periods), then periods 5-7 unrecovered (3 periods)
    # deepest: 1 - 0.550935 / 1.10187 = 0.5 exactly
    r = [0.1, -0.1, 0.05, 0.06, -0.5, 0.1, 0.1]
    assert m.max_drawdown_duration(r) == 3
    assert m.max_drawdown(r) == pytest.approx(0.5, rel=1e-12)


def test_drawdown_first_period_loss_counts_from_initial_capital() -> None:
    assert m.max_drawdown([-0.1, 0.05]) == pytest.approx(0.1)
    assert m.max_drawdown_duration([-0.1, 0.05]) == 2


def test_total_loss_annualizes_to_minus_one() -> None:
    assert m.annualized_return([0.1, -1.0, 0.0]) == -1.0
    assert m.max_drawdown([0.1, -1.0]) == pytest.approx(1.0)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize(("ppy", "rf"), [(252, 0.0), (12, 0.001), (52, -0.0005)])
def test_metrics_agree_with_empyrical_on_random_series(seed: int, ppy: int, rf: float) -> None:
    rng = np.random.default_rng(seed)
    r = rng.standard_t(df=4, size=300) * 0.01 + 0.0004
    s = pd.Series(r, index=pd.bdate_range("2021-01-01", periods=r.size))
    for x in (r, s):
        assert m.sharpe_ratio(x, ppy, rf) == pytest.approx(
            empyrical.sharpe_ratio(s, risk_free=rf, annualization=ppy)
        )
        assert m.sortino_ratio(x, ppy, rf) == pytest.approx(
            empyrical.sortino_ratio(s, required_return=rf, annualization=ppy)
        )
        assert m.annualized_return(x, ppy) == pytest.approx(empyrical.annual_return(s, annualization=ppy))
        assert m.annualized_volatility(x, ppy) == pytest.approx(
            empyrical.annual_volatility(s, annualization=ppy)
        )
        assert m.max_drawdown(x) == pytest.approx(-empyrical.max_drawdown(s))
        assert m.calmar_ratio(x, ppy) == pytest.approx(empyrical.calmar_ratio(s, annualization=ppy))
        assert m.total_return(x) == pytest.approx(empyrical.cum_returns_final(s))


def test_drawdown_duration_matches_explicit_loop_on_random_series() -> None:
    rng = np.random.default_rng(7)
    r = rng.normal(0.0005, 0.01, 500)
    wealth, peak, run, longest = 1.0, 1.0, 0, 0
    for x in r:
        wealth *= 1 + x
        if wealth >= peak:
            peak, run = wealth, 0
        else:
            run += 1
            longest = max(longest, run)
    assert m.max_drawdown_duration(r) == longest


def test_annual_to_period_rate_compounds_back() -> None:
    # (1.05) ** (1/12) - 1 = 0.0040741
    p = m.annual_to_period_rate(0.05, 12)
    assert p == pytest.approx(0.00407412378, rel=1e-8)
    assert (1 + p) ** 12 == pytest.approx(1.05)


# --- NaN policy and bad input -----------------------------------------------------------------------


def test_zero_dispersion_gives_nan_sharpe() -> None:
    assert math.isnan(m.sharpe_ratio([0.001] * 10))
    assert math.isnan(m.sharpe_ratio([0.0] * 10))


def test_single_observation_gives_nan_dispersion_metrics() -> None:
    assert math.isnan(m.annualized_volatility([0.01]))
    assert math.isnan(m.sharpe_ratio([0.01]))
    assert math.isnan(m.sortino_ratio([0.01]))


def test_no_downside_gives_nan_sortino_and_no_drawdown_nan_calmar() -> None:
    assert math.isnan(m.sortino_ratio([0.01, 0.02, 0.0]))
    assert math.isnan(m.calmar_ratio([0.01, 0.02, 0.0]))


def test_all_flat_periods_give_nan_hit_rate() -> None:
    assert math.isnan(m.hit_rate([0.0, 0.0]))


@pytest.mark.parametrize(
    "bad",
    [[], [0.01, np.nan], [0.01, np.inf], [[0.01, 0.02]], [0.1, -1.5], ["a", "b"]],
    ids=["empty", "nan", "inf", "2d", "below-minus-one", "text"],
)
def test_invalid_returns_raise_evaluation_error(bad: list[object]) -> None:
    with pytest.raises(EvaluationError):
        m.sharpe_ratio(bad)  # type: ignore[arg-type]
    with pytest.raises(EvaluationError):
        m.max_drawdown(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("ppy", [0, -1, math.nan, math.inf])
def test_invalid_periods_per_year_raise(ppy: float) -> None:
    with pytest.raises(EvaluationError):
        m.sharpe_ratio(HAND, periods_per_year=ppy)


# --- PSR / DSR -----------------------------------------------------------------------------------------


def test_psr_on_symmetric_two_point_series_matches_hand_value() -> None:
    # r = [0.03, -0.01, 0.03, -0.01]: mean 0.01, sample std sqrt(4 * 0.0004 / 3), SR = sqrt(3)/4 = 0.4330127
    # two-point symmetric distribution: skew 0, Pearson kurtosis 1 -> denominator sqrt(1 - 0 + 0) = 1
    # PSR(0) = Phi(SR * sqrt(n - 1)) = Phi(sqrt(3)/4 * sqrt(3)) = Phi(0.75) = 0.7733726
    r = [0.03, -0.01, 0.03, -0.01]
    assert m.probabilistic_sharpe_ratio(r) == pytest.approx(0.7733726, abs=1e-7)
    assert m.probabilistic_sharpe_ratio(r, benchmark_sharpe=math.sqrt(3) / 4) == pytest.approx(0.5)


def _psr_reference(r: list[float], sr_star: float) -> float:
    """Textbook PSR with moments accumulated in explicit loops."""
    n = len(r)
    mean = sum(r) / n
    m2 = sum((x - mean) ** 2 for x in r) / n
    m3 = sum((x - mean) ** 3 for x in r) / n
    m4 = sum((x - mean) ** 4 for x in r) / n
    sd_sample = math.sqrt(sum((x - mean) ** 2 for x in r) / (n - 1))
    sr = mean / sd_sample
    skew, kurt = m3 / m2**1.5, m4 / m2**2
    z = (sr - sr_star) * math.sqrt(n - 1) / math.sqrt(1 - skew * sr + (kurt - 1) / 4 * sr * sr)
    return 0.5 * math.erfc(-z / math.sqrt(2))


@pytest.mark.parametrize("seed", range(4))
def test_psr_matches_loop_reference_on_skewed_series(seed: int) -> None:
    rng = np.random.default_rng(seed)
    r = (rng.lognormal(0, 0.5, 250) - 1.1) * 0.01 + 0.001
    for sr_star in (0.0, 0.05):
        assert m.probabilistic_sharpe_ratio(r, sr_star) == pytest.approx(
            _psr_reference(list(r), sr_star), rel=1e-9
        )


def test_expected_max_sharpe_matches_formula_and_monte_carlo() -> None:
    # N = 10, V = 1: (1 - g) * z(0.9) + g * z(1 - 1/(10 e)), g = 0.5772156649
    g = 0.5772156649015329
    hand = (1 - g) * stats.norm.ppf(0.9) + g * stats.norm.ppf(1 - 1 / (10 * math.e))
    assert m.expected_max_sharpe(10, 1.0) == pytest.approx(hand, rel=1e-12)
    assert m.expected_max_sharpe(10, 4.0) == pytest.approx(2 * hand, rel=1e-12)
    assert m.expected_max_sharpe(1, 1.0) == 0.0
    # the approximation tracks E[max of N standard normals] (Bailey & Lopez de Prado 2014, fig. 1)
    draws = np.random.default_rng(0).standard_normal((4000, 100)).max(axis=1).mean()
    assert m.expected_max_sharpe(100, 1.0) == pytest.approx(draws, abs=0.06)


def test_dsr_is_psr_against_expected_max_and_falls_with_more_trials() -> None:
    rng = np.random.default_rng(3)
    r = rng.normal(0.001, 0.01, 500)
    sr0 = m.expected_max_sharpe(50, 0.002)
    assert m.deflated_sharpe_ratio(r, 50, 0.002) == pytest.approx(m.probabilistic_sharpe_ratio(r, sr0))
    dsrs = [m.deflated_sharpe_ratio(r, n, 0.002) for n in (1, 10, 100, 1000)]
    assert dsrs[0] == pytest.approx(m.probabilistic_sharpe_ratio(r))
    assert all(a > b for a, b in itertools.pairwise(dsrs))


@pytest.mark.parametrize(("n", "v"), [(0, 1.0), (2.5, 1.0), (10, -1.0), (10, math.nan)])
def test_expected_max_sharpe_rejects_bad_arguments(n: float, v: float) -> None:
    with pytest.raises(EvaluationError):
        m.expected_max_sharpe(n, v)  # type: ignore[arg-type]


# --- equity curves and summary -------------------------------------------------------------------------


def test_returns_from_equity_and_gross_equity() -> None:
    np.testing.assert_allclose(m.returns_from_equity([100, 110, 99]), [0.1, -0.1])
    # gross = net + costs paid so far: [100, 110 + 2, 99 + 2 + 1]
    np.testing.assert_allclose(m.gross_equity([100, 110, 99], [2, 1]), [100, 112, 102])
    with pytest.raises(EvaluationError):
        m.gross_equity([100, 110, 99], [2, 1, 0])
    with pytest.raises(EvaluationError):
        m.returns_from_equity([100, 0, 50])
    with pytest.raises(EvaluationError):
        m.returns_from_equity([100])


def _summary_inputs() -> dict[str, object]:
    return {
        "traded_notional": [1000.0, 500.0, 0.0],
        "costs": {"spread": [1.0, 0.5, 0.0], "fees": [0.5, 0.25, 0.0]},
        "exposure": [1.0, 0.5, 0.0],
        "periods_per_year": 3,
    }


def test_performance_summary_hand_case() -> None:
    # equity 100 -> 110 -> 99 -> 99: returns 0.1, -0.1, 0; three periods = one year at ppy 3
    # costs per period 1.5, 0.75, 0 -> gross equity 100, 110 + 1.5, 99 + 2.25, 99 + 2.25 = 101.25
    # turnover = 1500 / mean(110, 99, 99) * 3 / 3 = 1500 / 102.6667 = 14.61039
    # cost bps: spread 1.5 / 1500 = 10 bps, fees 0.75 / 1500 = 5 bps, total 15 bps, impact 0
    s = m.performance_summary([100.0, 110.0, 99.0, 99.0], **_summary_inputs())  # type: ignore[arg-type]
    assert s["total_return"] == pytest.approx(-0.01)
    assert s["annualized_return"] == pytest.approx(-0.01)
    assert s["gross_total_return"] == pytest.approx(0.0125)
    assert s["gross_annualized_return"] == pytest.approx(0.0125)
    assert s["max_drawdown"] == pytest.approx(0.1)
    assert s["max_drawdown_duration"] == 2
    assert s["hit_rate"] == pytest.approx(0.5)
    assert s["turnover"] == pytest.approx(1500 / (308 / 3))
    assert s["exposure"] == pytest.approx(0.5)
    assert s["time_in_market"] == pytest.approx(2 / 3)
    assert s["traded_notional"] == pytest.approx(1500)
    assert (s["cost_spread"], s["cost_impact"], s["cost_fees"], s["cost_total"]) == pytest.approx(
        (1.5, 0, 0.75, 2.25)
    )
    assert (s["cost_spread_bps"], s["cost_impact_bps"], s["cost_fees_bps"], s["cost_bps"]) == pytest.approx(
        (10, 0, 5, 15)
    )
    # sample std of (0.1, -0.1, 0) = 0.1, mean 0 -> Sharpe 0
    assert s["sharpe"] == pytest.approx(0.0, abs=1e-12)
    assert s["annualized_volatility"] == pytest.approx(0.1 * math.sqrt(3))
    assert s["n_periods"] == 3
    assert all(isinstance(v, float) for v in s.values())


def test_performance_summary_initial_equity_equals_prepended_curve() -> None:
    a = m.performance_summary([100.0, 110.0, 99.0, 99.0], **_summary_inputs())  # type: ignore[arg-type]
    b = m.performance_summary([110.0, 99.0, 99.0], initial_equity=100.0, **_summary_inputs())  # type: ignore[arg-type]
    assert a.keys() == b.keys()
    for k in a:
        assert a[k] == pytest.approx(b[k], nan_ok=True), k


def test_performance_summary_no_trades_gives_nan_cost_bps() -> None:
    s = m.performance_summary(
        [100.0, 100.0, 101.0], traded_notional=[0, 0], costs={}, exposure=[0, 1], periods_per_year=252
    )
    assert math.isnan(s["cost_bps"])
    assert s["cost_total"] == 0.0
    assert s["turnover"] == 0.0


@pytest.mark.parametrize(
    "override",
    [
        {"traded_notional": [1.0, 2.0]},
        {"exposure": [1.0, 0.5, 0.0, 0.0]},
        {"costs": {"spread": [1.0]}},
        {"costs": {"slippage": [0.0, 0.0, 0.0]}},
        {"traded_notional": [-1.0, 0.0, 0.0]},
        {"exposure": [np.nan, 0.0, 0.0]},
    ],
    ids=["notional-len", "exposure-len", "cost-len", "unknown-cost", "negative-notional", "nan-exposure"],
)
def test_performance_summary_rejects_misaligned_or_invalid_inputs(override: dict[str, object]) -> None:
    kwargs = {**_summary_inputs(), **override}
    with pytest.raises(EvaluationError):
        m.performance_summary([100.0, 110.0, 99.0, 99.0], **kwargs)  # type: ignore[arg-type]
