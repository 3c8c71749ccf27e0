"""Held-out evaluation of an agent: every strategy is scored on the whole held-out window, also when the
agent is ruined inside it; the ruin is reported, not hidden in a shorter window."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from ai_trading.rl_trading.evaluate import evaluate_agent
from tests.rl_trading.conftest import env_data, job

RUIN = 0.999  # a 0.1% loss ruins: an agent paying costs every bar gets there within the window


class FixedPolicy:
    """Test double of the policy only (the env and the backtest are real): the ``act`` interface of
    :class:`~ai_trading.rl_trading.train.TrainedAgent` with scripted actions."""

    def __init__(self, n_symbols: int, *, churn: bool) -> None:
        self.n_symbols, self.churn, self.calls = n_symbols, churn, 0

    def act(self, observation: np.ndarray) -> np.ndarray:
        action = np.zeros((observation.shape[0], self.n_symbols), dtype=np.float32)
        if self.churn:  # all in one symbol, then all in the other: pays two round trips of costs each bar
            action[:, self.calls % self.n_symbols] = 1.0
        self.calls += 1
        return action


def test_evaluate_agent_ruined_inside_the_window_scores_every_strategy_on_the_full_window(
        caplog: pytest.LogCaptureFixture) -> None:
    config = job(f"env.ruin_threshold={RUIN}")
    data = env_data()
    policy = FixedPolicy(data.n_symbols, churn=True)
    with caplog.at_level(logging.WARNING, logger="ai_trading.rl_trading.evaluate"):
        evaluation = evaluate_agent(data, config.env, config.trend, policy, seed=0)
    record, results = evaluation.record, evaluation.results
    held_out = data.market.timestamps[data.n_train - 1:]  # the initial state, then every held-out bar
    assert policy.calls == len(held_out) - 1
    assert record.ruin_step is not None and 0 < record.ruin_step < record.n_steps - 10
    assert set(results) == {"rl", "buy_and_hold", "cash", "trend"}
    for name, result in results.items():
        assert result.equity.index.equals(held_out), name
        assert result.metrics["n_periods"] == len(held_out) - 1, name
    # Ruined at the first bar whose close put equity at or below the threshold; flat from the next decision.
    k = record.ruin_step
    assert record.equity[k] <= RUIN * record.initial_cash < record.equity[:k].min()
    rl = results["rl"]
    assert (rl.targets.to_numpy()[:k + 1] != 0).any()
    assert (rl.targets.to_numpy()[k + 1:] == 0).all()
    assert (rl.positions.iloc[-1] == 0).all()
    # Flat: nothing left to gain or lose but the interest on the cash.
    assert rl.costs.iloc[-1].sum() == 0.0 and rl.financing.iloc[-1] > 0.0
    assert rl.equity.iloc[-1] - rl.equity.iloc[-2] == pytest.approx(rl.financing.iloc[-1], rel=1e-9)
    assert evaluation.ruined and evaluation.metrics() == {"eval/rl/ruined": 1.0}
    assert evaluation.ruin_timestamp == record.exec_timestamps[k] == rl.equity.index[k + 1]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("ruined" in m and str(evaluation.ruin_timestamp) in m for m in warnings)


def test_evaluate_agent_without_ruin_reports_zero_and_scores_the_full_window() -> None:
    config = job(f"env.ruin_threshold={RUIN}")
    data = env_data()
    evaluation = evaluate_agent(data, config.env, config.trend, FixedPolicy(data.n_symbols, churn=False), seed=0)
    assert not evaluation.ruined and evaluation.ruin_timestamp is None
    assert evaluation.metrics() == {"eval/rl/ruined": 0.0}
    for result in evaluation.results.values():
        assert result.equity.index.equals(data.market.timestamps[data.n_train - 1:])
