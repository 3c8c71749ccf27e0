"""Training: reproducible with a seed, different across seeds, validation split held out."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ai_trading.errors import ConfigError
from ai_trading.rl_trading import make_env
from ai_trading.rl_trading.train import TrainedAgent, train_agent, whole_rollouts
from tests.rl_trading.conftest import env_data, job

TINY = ["algo.total_timesteps=512", "algo.progress_bar=false", "algo.eval_every=256", "algo.patience=0",
        "algo.n_envs=4", "algo.hyperparams.n_steps=64", "algo.hyperparams.batch_size=64", "torch_threads=1"]


def _train(seed: int, *overrides: str) -> TrainedAgent:
    torch.set_num_threads(1)
    config = job(*TINY, *overrides)
    return train_agent(config.algo, config.env, env_data(), seed=seed)


def _params(agent: TrainedAgent) -> list[np.ndarray]:
    return [p.detach().numpy().copy() for p in agent.model.policy.parameters()]


def test_train_same_seed_learns_identical_parameters() -> None:
    a, b = _train(7), _train(7)
    assert a.timesteps == b.timesteps == 512
    for pa, pb in zip(_params(a), _params(b), strict=True):
        np.testing.assert_array_equal(pa, pb)
    assert a.normalizer is not None and b.normalizer is not None
    np.testing.assert_array_equal(a.normalizer.obs_rms.mean, b.normalizer.obs_rms.mean)


def test_train_other_seed_learns_other_parameters() -> None:
    a, b = _train(1), _train(2)
    assert any(not np.array_equal(pa, pb) for pa, pb in zip(_params(a), _params(b), strict=True))


def test_validation_split_lies_between_training_windows_and_held_out_eval() -> None:
    cfg = job(*TINY).env
    data = env_data()
    val = make_env(data, cfg, split="validation", seed=0).envs[0].unwrapped  # type: ignore[attr-defined]
    ev = make_env(data, cfg, split="eval", seed=0).envs[0].unwrapped  # type: ignore[attr-defined]
    train = make_env(data, cfg, split="train", seed=0, batched=False).envs[0].unwrapped  # type: ignore[attr-defined]
    # Last executed row of any training window < first validation execution row <= ... < first eval row.
    assert train.layout.hi + train.layout.length < val.layout.lo + 1
    assert val.layout.lo + val.layout.length == ev.layout.lo
    assert ev.layout.lo + ev.layout.length == ev.data.market.shape[0] - 1


def test_algo_config_rejects_unknown_algorithm_and_bad_hyperparameter() -> None:
    with pytest.raises(ConfigError, match="not one of"):
        job("algo.name=dqn")
    with pytest.raises(ConfigError, match="not_a_ppo_argument=3: not a parameter of PPO"):
        _train(0, "+algo.hyperparams.not_a_ppo_argument=3")


def test_evaluate_agent_replays_episode_and_runs_baselines_on_same_window() -> None:
    from ai_trading.rl_trading.evaluate import evaluate_agent, play_eval_episode

    config = job(*TINY)
    agent = _train(3)
    data = env_data()
    record = play_eval_episode(data, config.env, agent, seed=3)
    evaluation = evaluate_agent(data, config.env, config.trend, agent, seed=3)
    results = evaluation.results
    np.testing.assert_array_equal(evaluation.record.weights, record.weights)
    assert set(results) == {"rl", "buy_and_hold", "cash", "trend"}
    np.testing.assert_array_equal(results["rl"].equity.to_numpy()[1:], record.equity)
    stamps = results["rl"].equity.index
    assert stamps[1] == data.market.timestamps[data.n_train]  # first execution on the held-out tail
    assert stamps[-1] == data.market.timestamps[-1]
    for result in results.values():
        assert result.equity.index.equals(stamps)
        costs = result.costs.to_numpy().sum()
        gap = result.gross_equity.iloc[-1] - result.equity.iloc[-1]
        assert gap == pytest.approx(costs, rel=1e-9, abs=1e-6)
    assert results["cash"].total_costs == 0.0 and (np.diff(results["cash"].equity.to_numpy()) > 0).all()  # interest


def test_budget_rounds_up_to_whole_rollouts_and_trains_exactly_that() -> None:
    config = job(*TINY, "algo.total_timesteps=300")  # 4 envs x 64 steps per rollout
    assert whole_rollouts(config.algo, 4) == 512
    assert whole_rollouts(job("algo.total_timesteps=5000").algo, 64) == 8192  # ppo's 64 envs x 64 steps
    assert whole_rollouts(job("algo=sac", "algo.total_timesteps=1001").algo, 16) == 1008  # whole vector steps
    assert whole_rollouts(job("algo.total_timesteps=8192").algo, 64) == 8192
    assert _train(0, "algo.total_timesteps=300", "algo.eval_every=0").timesteps == 512


def test_training_that_stops_early_says_why_in_its_last_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="ai_trading.rl_trading.train")
    agent = _train(0, "algo.total_timesteps=8192", "algo.eval_every=64", "algo.patience=1")
    assert agent.timesteps < 8192, "this seed's validation reward stalls within the budget"
    last = [r.getMessage() for r in caplog.records if r.getMessage().startswith("trained ")][-1]
    assert last.startswith(f"trained algo=ppo timesteps={agent.timesteps} of 8192: stopped early, no validation "
                           "improvement in 1 evaluations (every 64 steps), best validation reward ")


def test_training_that_runs_its_budget_says_nothing_more(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="ai_trading.rl_trading.train")
    _train(0)
    assert [r.getMessage() for r in caplog.records if r.getMessage().startswith("trained ")] == [
        "trained algo=ppo timesteps=512"]
