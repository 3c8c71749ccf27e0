"""The sweep summary on constructed seed outcomes: the table, the printed text and the parent's metrics."""

from __future__ import annotations

import math

import pytest

from ai_trading.tracking.summary import SeedOutcome, headline_metrics, summarise


def _metrics(rl: float, buy_and_hold: float, trend: float) -> dict[str, float]:
    out: dict[str, float] = {}
    for strategy, sharpe in (("rl", rl), ("buy_and_hold", buy_and_hold), ("trend", trend)):
        out[f"eval/{strategy}/net/sharpe"] = sharpe
        out[f"eval/{strategy}/net/total_return"] = sharpe / 10
        out[f"eval/{strategy}/net/max_drawdown"] = 0.2 - sharpe / 10
        out[f"eval/{strategy}/net/turnover"] = 3.0 if strategy == "rl" else 1.0
        out[f"eval/{strategy}/gross/sharpe"] = sharpe + 1.0  # gross numbers must not leak into the summary
    return out


SEEDS = [SeedOutcome("exp__ppo__seed0", "FINISHED", _metrics(0.50, 0.568, 0.654), seed=0),
         SeedOutcome("exp__ppo__seed1", "FINISHED", _metrics(0.90, 0.568, 0.654), seed=1),
         SeedOutcome("exp__ppo__seed2", "FINISHED", _metrics(0.40, 0.568, 0.654), seed=2)]


def test_headline_metrics_are_net_agent_metrics_and_excess_over_each_baseline() -> None:
    headline = headline_metrics(_metrics(0.9, 0.5, 0.7))
    assert headline["summary/net_sharpe"] == 0.9
    assert headline["summary/net_return"] == pytest.approx(0.09)
    assert headline["summary/max_drawdown"] == pytest.approx(0.11)
    assert headline["summary/turnover"] == 3.0
    assert headline["summary/excess_sharpe_vs_buy_and_hold"] == pytest.approx(0.4)
    assert headline["summary/excess_sharpe_vs_trend"] == pytest.approx(0.2)
    assert headline["summary/excess_return_vs_trend"] == pytest.approx(0.02)
    assert all(k.startswith("summary/") for k in headline)


def test_summarise_counts_seeds_beating_each_baseline_with_mean_and_spread() -> None:
    summary = summarise("exp__sweep", SEEDS)
    assert summary.finished == 3 and summary.failed == 0
    assert summary.metrics["summary/seeds_beating_buy_and_hold"] == 1.0  # only 0.90 > 0.568
    assert summary.metrics["summary/seeds_beating_trend"] == 1.0
    assert summary.metrics["summary/net_sharpe"] == pytest.approx((0.5 + 0.9 + 0.4) / 3)
    assert summary.metrics["summary/net_sharpe_std"] == pytest.approx(0.2645751, rel=1e-6)
    assert summary.metrics["summary/buy_and_hold_net_sharpe"] == pytest.approx(0.568)
    assert summary.metrics["summary/trend_net_sharpe"] == pytest.approx(0.654)
    lines = summary.text.splitlines()
    seed1 = next(line for line in lines if line.startswith("seed1"))
    assert "0.900" in seed1 and "0.568" in seed1 and "0.654" in seed1 and seed1.split()[-2:] == ["yes", "yes"]
    assert next(line for line in lines if line.startswith("seed0")).split()[-2:] == ["no", "no"]
    assert "buy_and_hold 1/3, trend 1/3" in summary.text
    assert list(summary.table["run"]) == [s.name for s in SEEDS]
    assert list(summary.table["beats_trend"]) == [False, True, False]


def test_summarise_with_a_failed_seed_still_summarises_the_others_and_names_the_error() -> None:
    failed = SeedOutcome("exp__ppo__seed3", "FAILED", {}, "DataValidationError: [bad_range] start after end", seed=3)
    summary = summarise("exp__sweep", [*SEEDS[:2], failed])
    assert summary.finished == 2 and summary.failed == 1
    assert summary.metrics["summary/seeds_failed"] == 1.0
    assert summary.metrics["summary/net_sharpe"] == pytest.approx(0.7)
    assert "seed3 FAILED (run exp__ppo__seed3): DataValidationError: [bad_range] start after end" in summary.text
    assert summary.table.set_index("run").loc["exp__ppo__seed3", "error"].startswith("DataValidationError")


def test_summarise_every_seed_failed_has_no_means_but_lists_the_failures() -> None:
    failed = [SeedOutcome(f"exp__ppo__seed{i}", "FAILED", {}, "RuntimeError: boom", seed=i) for i in range(2)]
    summary = summarise("exp__sweep", failed)
    assert summary.finished == 0
    assert "summary/net_sharpe" not in summary.metrics
    assert summary.text.count("RuntimeError: boom") == 2


def test_summarise_flat_agent_with_no_sharpe_does_not_count_as_beating() -> None:
    flat = SeedOutcome("exp__ppo__seed0", "FINISHED", _metrics(math.nan, 0.5, 0.6), seed=0)
    summary = summarise("exp__sweep", [flat, SEEDS[1]])
    assert summary.metrics["summary/seeds_beating_buy_and_hold"] == 1.0
    assert summary.metrics["summary/net_sharpe"] == pytest.approx(0.9)  # the mean skips the missing Sharpe
    assert "n/a" in next(line for line in summary.text.splitlines() if line.startswith("seed0"))
