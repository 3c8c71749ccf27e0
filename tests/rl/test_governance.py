"""Multi-seed promotion gates on constructed seed results: each criterion fails on its own and says so, failed
seeds count against the sweep, the deflated Sharpe ratio against the published formula, the decision's JSON
round trip, and the decision and the governance_failed event on a real MLflow store."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from scipy import stats

from ai_trading.errors import ConfigError, EvaluationError
from ai_trading.rl.governance import (
    GovernanceConfig,
    GovernanceDecision,
    SeedResult,
    best_seed,
    evaluate_governance,
    log_decision,
    promote_best,
)
from ai_trading.tracking import TrackingConfig, start_run
from ai_trading.wiring import governance_config
from tests.conftest import compose_config

CONFIG = GovernanceConfig()
SHARPES = (1.4, 1.5, 1.6, 1.55, 1.45)


def _returns(mean: float, seed: int = 7, n: int = 1000) -> tuple[float, ...]:
    return tuple(float(r) for r in np.random.default_rng(seed).normal(mean, 0.01, n))


def _seed(i: int, **changes: Any) -> SeedResult:
    base = SeedResult(seed=i, run_id=f"run{i}", status="FINISHED", net_sharpe=SHARPES[i % 5], net_return=0.12,
                      max_drawdown=0.1, turnover=5.0, benchmark_sharpe=0.3, periods_per_year=252.0,
                      net_returns=_returns(0.0015, seed=i))
    return dataclasses.replace(base, **changes)


def _passing() -> list[SeedResult]:
    return [_seed(i) for i in range(5)]


def test_the_constructed_set_passes_every_gate() -> None:
    decision = evaluate_governance(CONFIG, _passing(), 5)
    assert decision.passed, decision.table()
    assert decision.reasons == []
    assert decision.best_seed == 2 and decision.best_run_id == "run2"  # the highest net Sharpe
    assert {c.name for c in decision.criteria} == {
        "seeds_finished", "mean_net_sharpe", "net_sharpe_std", "mean_net_return", "worst_max_drawdown",
        "lowest_turnover", "highest_turnover", "deflated_sharpe", "excess_sharpe_vs_buy_and_hold",
        "fraction_beating_buy_and_hold"}


def _with(**changes: Any) -> Callable[[list[SeedResult]], list[SeedResult]]:
    return lambda seeds: [dataclasses.replace(s, **changes) for s in seeds]


def _one(i: int, **changes: Any) -> Callable[[list[SeedResult]], list[SeedResult]]:
    return lambda seeds: [dataclasses.replace(s, **changes) if s.seed == i else s for s in seeds]


BREAKS: list[tuple[str, Callable[[list[SeedResult]], list[SeedResult]], str]] = [
    ("seeds_finished", lambda seeds: seeds[:4], "4 of 4 seeds finished, below the 5 minimum"),
    ("mean_net_sharpe", lambda seeds: [dataclasses.replace(s, net_sharpe=s.net_sharpe - 1.1) for s in seeds],
     "mean net Sharpe 0.40 across 5 seeds is below the 0.50 minimum"),
    ("net_sharpe_std", lambda seeds: [dataclasses.replace(s, net_sharpe=v)
                                      for s, v in zip(seeds, (0.9, 2.1, 1.0, 2.0, 1.5), strict=True)],
     "net Sharpe spread (std) 0.55 across 5 seeds is above the 0.50 maximum"),
    ("mean_net_return", _with(net_return=-0.01), "mean net return -1.00% after costs across 5 seeds is not above"),
    ("worst_max_drawdown", _one(3, max_drawdown=0.4), "worst max drawdown 40.0% (seed 3) exceeds the 25.0% limit"),
    ("lowest_turnover", _one(1, turnover=0.1), "lowest turnover 0.10x equity a year (seed 1) is below"),
    ("highest_turnover", _one(4, turnover=80.0), "highest turnover 80.00x equity a year (seed 4) is above"),
    ("deflated_sharpe", lambda seeds: [dataclasses.replace(s, net_returns=_returns(0.0, seed=s.seed or 0))
                                       for s in seeds], "deflated Sharpe ratio"),
    ("excess_sharpe_vs_buy_and_hold", lambda seeds: [dataclasses.replace(s, benchmark_sharpe=b)
                                                     for s, b in zip(seeds, (1.3, 1.4, 1.5, 1.45, 2.5), strict=True)],
     "mean net Sharpe excess over buy-and-hold -0.13 across 5 seeds is not above +0.00"),
    ("fraction_beating_buy_and_hold", lambda seeds: [dataclasses.replace(s, benchmark_sharpe=b)
                                                     for s, b in zip(seeds, (1.5, 1.6, 0.0, 0.0, 0.0), strict=True)],
     "3 of 5 seeds (60%) beat buy-and-hold's net Sharpe, below the 80% minimum"),
]


@pytest.mark.parametrize(("criterion", "breaker", "reason"), BREAKS, ids=[b[0] for b in BREAKS])
def test_each_criterion_fails_on_its_own_and_its_reason_names_it(
        criterion: str, breaker: Callable[[list[SeedResult]], list[SeedResult]], reason: str) -> None:
    seeds = breaker(_passing())
    decision = evaluate_governance(CONFIG, seeds, 5)
    assert not decision.passed
    assert [c.name for c in decision.criteria if not c.passed] == [criterion], decision.table()
    (text,) = decision.reasons
    assert reason in text
    assert decision.criterion(criterion).reason == text
    assert f"{criterion:<34}" in decision.table() and "FAIL" in decision.table()


def test_a_metric_the_seeds_did_not_log_fails_its_criterion_and_says_so() -> None:
    decision = evaluate_governance(CONFIG, _with(turnover=math.nan)(_passing()), 5)
    assert [c.name for c in decision.criteria if not c.passed] == ["lowest_turnover", "highest_turnover"]
    assert all("not measured" in r for r in decision.reasons)


def test_fewer_seeds_than_the_minimum_fails_even_when_every_seed_is_good() -> None:
    decision = evaluate_governance(GovernanceConfig(min_seeds=6), _passing(), 5)
    assert not decision.passed
    assert decision.reasons == ["5 of 5 seeds finished, below the 6 minimum"]
    assert evaluate_governance(GovernanceConfig(min_seeds=3), _passing()[:3], 3).passed


def test_a_failed_seed_counts_against_the_minimum_and_the_fraction_and_is_listed() -> None:
    seeds = _passing()
    seeds[1] = SeedResult(seed=1, run_id="run1", status="FAILED", error="RuntimeError: boom in training")
    decision = evaluate_governance(CONFIG, seeds, 5)
    assert not decision.passed
    assert decision.n_seeds == 5 and decision.n_finished == 4
    assert decision.reasons == ["4 of 5 seeds finished, below the 5 minimum (failed: seed 1 FAILED)"]
    assert decision.criterion("fraction_beating_buy_and_hold").value == pytest.approx(4 / 5)  # failed: not beating
    assert "seed 1 FAILED (run run1): RuntimeError: boom in training" in decision.table()
    # A sixth seed that finished makes up the minimum; the failed one still counts in the fraction's denominator.
    more = [*seeds, _seed(5)]
    decision = evaluate_governance(CONFIG, more, 6)
    assert decision.passed, decision.table()
    assert decision.criterion("fraction_beating_buy_and_hold").value == pytest.approx(5 / 6)
    assert decision.criterion("mean_net_sharpe").value == pytest.approx(np.mean([s.net_sharpe for s in more
                                                                                 if s.status == "FINISHED"]))


def test_no_finished_seed_fails_every_gate_without_a_best_seed() -> None:
    seeds = [SeedResult(seed=i, run_id=f"run{i}", status="KILLED", error="stopped") for i in range(5)]
    decision = evaluate_governance(CONFIG, seeds, 5)
    assert not decision.passed and decision.best_run_id is None
    assert len(decision.reasons) == len(decision.criteria)


def test_best_seed_breaks_ties_by_drawdown_then_seed() -> None:
    seeds = [_seed(0, net_sharpe=2.0, max_drawdown=0.2), _seed(1, net_sharpe=2.0, max_drawdown=0.1),
             _seed(2, net_sharpe=2.0, max_drawdown=0.1), _seed(3, net_sharpe=math.nan)]
    best = best_seed(seeds)
    assert best is not None and best.seed == 1


def _published_dsr(returns: tuple[float, ...], n_trials: int, annual_sharpes: tuple[float, ...], ppy: float) -> float:
    """Bailey and Lopez de Prado (2014), eq. for the DSR, written out from the paper."""
    r = np.asarray(returns)
    n = r.size
    sr = r.mean() / r.std(ddof=1)
    centred = r - r.mean()
    skew = np.mean(centred**3) / np.mean(centred**2) ** 1.5
    kurt = np.mean(centred**4) / np.mean(centred**2) ** 2
    per_period = np.asarray(annual_sharpes) / math.sqrt(ppy)
    v = per_period.var(ddof=1)
    gamma = 0.5772156649015329
    sr0 = math.sqrt(v) * ((1 - gamma) * stats.norm.ppf(1 - 1 / n_trials)
                          + gamma * stats.norm.ppf(1 - 1 / (n_trials * math.e)))
    return float(stats.norm.cdf((sr - sr0) * math.sqrt(n - 1) / math.sqrt(1 - skew * sr + (kurt - 1) / 4 * sr**2)))


def test_deflated_sharpe_falls_with_more_trials_and_matches_the_published_formula() -> None:
    seeds = [_seed(i, net_returns=_returns(0.0006, seed=i)) for i in range(5)]
    few = evaluate_governance(CONFIG, seeds, 5).criterion("deflated_sharpe").value
    many = evaluate_governance(CONFIG, seeds, 500).criterion("deflated_sharpe").value
    assert many < few
    best = seeds[2]
    assert few == pytest.approx(_published_dsr(best.net_returns, 5, SHARPES, 252.0), rel=1e-9)
    assert many == pytest.approx(_published_dsr(best.net_returns, 500, SHARPES, 252.0), rel=1e-9)
    # The trials' Sharpes (the sweep's other configurations too) set the hurdle, not only the seeds'.
    wide = (*SHARPES, -1.0, 3.0, 0.2)
    spread = evaluate_governance(CONFIG, seeds, 8, trial_sharpes=wide).criterion("deflated_sharpe").value
    assert spread == pytest.approx(_published_dsr(best.net_returns, 8, wide, 252.0), rel=1e-9)
    assert spread < evaluate_governance(CONFIG, seeds, 8).criterion("deflated_sharpe").value


def test_n_trials_below_the_number_of_seeds_is_rejected() -> None:
    with pytest.raises(EvaluationError, match="n_trials=3"):
        evaluate_governance(CONFIG, _passing(), 3)


def test_decision_json_round_trips_with_undefined_values() -> None:
    seeds = _passing()
    seeds[0] = SeedResult(seed=0, run_id="run0", status="FAILED", error="ConfigError: bad")
    seeds[3] = dataclasses.replace(seeds[3], turnover=math.nan)
    decision = evaluate_governance(CONFIG, seeds, 7, sweep_id="exp__2026")
    text = decision.to_json()  # strict JSON: NaN is written as null
    payload = json.loads(text)
    assert payload["seeds"][0]["net_sharpe"] is None
    assert [c["value"] for c in payload["criteria"] if c["name"].endswith("_turnover")] == [None, None]
    again = GovernanceDecision.from_dict(payload)
    assert again.to_dict() == decision.to_dict()
    assert again.passed is False and again.reasons == decision.reasons and again.n_trials == 7
    assert again.config == CONFIG and again.sweep_id == "exp__2026"


def test_config_defaults_equal_the_yaml_and_thresholds_override_on_the_command_line() -> None:
    assert governance_config(compose_config()) == GovernanceConfig()
    assert governance_config(compose_config(["governance.min_seeds=3"])).min_seeds == 3


@pytest.mark.parametrize(("override", "key"), [
    ("governance.min_seeds=0", "governance.min_seeds"),
    ("governance.min_deflated_sharpe=1.5", "governance.min_deflated_sharpe"),
    ("governance.min_turnover=100", "governance.min_turnover"),
    ("governance.max_worst_drawdown=0", "governance.max_worst_drawdown"),
    ("governance.max_sharpe_std=abc", "governance.max_sharpe_std"),
])
def test_a_bad_threshold_is_a_config_error_naming_its_key(override: str, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        governance_config(compose_config([override]))


def _tracked_decision(mlflow_uri: str, passed: bool) -> tuple[MlflowClient, str, GovernanceDecision,
                                                               list[tuple[str, dict[str, Any]]]]:
    seeds = _passing() if passed else _with(net_return=-0.01)(_passing())
    decision = evaluate_governance(CONFIG, seeds, 5, sweep_id="exp__sweep")
    registered: list[tuple[str, dict[str, Any]]] = []
    with start_run(TrackingConfig(mlflow_uri, "exp"), run_name="parent", resolved_config={}) as run:
        log_decision(run, decision)
        promote_best(decision, register=lambda run_id, payload: registered.append((run_id, payload)), run=run)
        run_id = run.run_id
    return MlflowClient(tracking_uri=mlflow_uri), run_id, decision, registered


def test_a_logged_decision_reloads_from_the_store(mlflow_uri: str) -> None:
    client, run_id, decision, registered = _tracked_decision(mlflow_uri, passed=True)
    path = Path(client.download_artifacts(run_id, "governance/decision.json"))
    assert GovernanceDecision.from_dict(json.loads(path.read_text())).to_dict() == decision.to_dict()
    run = client.get_run(run_id)
    assert run.data.tags["governance.passed"] == "true" and run.data.tags["governance.best_run_id"] == "run2"
    assert run.data.metrics["governance/passed"] == 1.0
    assert run.data.metrics["governance/mean_net_sharpe"] == pytest.approx(np.mean(SHARPES))
    assert registered == [("run2", decision.to_dict())]
    assert "governance/event.json" not in {a.path for a in client.list_artifacts(run_id, "governance")}


def test_a_failing_decision_registers_nothing_and_emits_governance_failed(
        mlflow_uri: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="ai_trading.rl.governance"):
        client, run_id, decision, registered = _tracked_decision(mlflow_uri, passed=False)
    assert registered == []
    event = json.loads(Path(client.download_artifacts(run_id, "governance/event.json")).read_text())
    assert event["kind"] == "governance_failed" and event["severity"] == "warning"
    assert event["sweep_id"] == "exp__sweep" and event["reasons"] == decision.reasons
    assert event["reasons"][0].startswith("mean net return -1.00% after costs")
    assert GovernanceDecision.from_dict(event["decision"]).passed is False
    assert client.get_run(run_id).data.tags["governance.passed"] == "false"
    assert "governance_failed sweep_id=exp__sweep criteria_failed=1 reasons=mean net return" in caplog.text
