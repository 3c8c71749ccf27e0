"""BatchedPortfolioEnv agrees step for step with DummyVecEnv(PortfolioEnv) and trains under SB3."""

from __future__ import annotations

import numpy as np
import pytest
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import DummyVecEnv

from ai_trading.rl_trading import BatchedPortfolioEnv, make_env
from tests.rl_trading.conftest import env_config, env_data


@pytest.mark.parametrize(("name", "ruin"), [("portfolio", 0.98), ("long_short", 0.97)])
def test_batched_env_same_seeds_equals_single_envs_step_for_step(name: str, ruin: float) -> None:
    # A high ruin threshold makes some episodes end by ruin, the others end at their window's end.
    overrides = ("env.episode_length=25", f"env.ruin_threshold={ruin}", "env.initial_cash=20000000.0")
    cfg, data = env_config(name, *overrides), env_data(name, *overrides)
    batched = make_env(data, cfg, split="train", seed=7, n_envs=4, batched=True)
    single = make_env(data, cfg, split="train", seed=7, n_envs=4, batched=False)
    assert isinstance(batched, BatchedPortfolioEnv) and isinstance(single, DummyVecEnv)
    np.testing.assert_array_equal(batched.reset(), single.reset())
    rng = np.random.default_rng(0)
    low, high = batched.action_space.low, batched.action_space.high
    ended, ruined = 0, 0
    for _ in range(80):  # several episodes per env
        actions = rng.uniform(low * 1.5, high * 1.5, (4, data.n_symbols)).astype(np.float32)
        ob, rb, db, ib = batched.step(actions)
        os_, rs, ds, is_ = single.step(actions)
        np.testing.assert_array_equal(ob, os_)
        np.testing.assert_array_equal(rb, rs)
        np.testing.assert_array_equal(db, ds)
        for i in np.flatnonzero(db):
            ended += 1
            ruined += not ib[i]["TimeLimit.truncated"]
            np.testing.assert_array_equal(ib[i]["terminal_observation"], is_[i]["terminal_observation"])
            assert ib[i]["TimeLimit.truncated"] == is_[i]["TimeLimit.truncated"]
            assert ib[i]["episode"]["l"] == is_[i]["episode"]["l"]
            assert ib[i]["episode"]["r"] == pytest.approx(is_[i]["episode"]["r"], abs=2e-6)
    assert ended >= 8 and 0 < ruined < ended


def test_batched_env_trains_with_ppo_and_reports_episodes() -> None:
    cfg, data = env_config("portfolio", "env.episode_length=16"), env_data("portfolio", "env.episode_length=16")
    venv = make_env(data, cfg, split="train", seed=0, n_envs=8, batched=True)
    model = PPO("MlpPolicy", venv, n_steps=16, batch_size=64, n_epochs=1, seed=0,
                policy_kwargs={"net_arch": [16]}, device="cpu")
    model.learn(total_timesteps=256)
    assert model.num_timesteps == 256
    assert len(model.ep_info_buffer) >= 8


@pytest.mark.parametrize("slots", [2, 3])
def test_batched_env_small_episode_pool_refilled_mid_rollout_equals_single_envs(
        slots: int, monkeypatch: pytest.MonkeyPatch) -> None:
    # Few pool slots: envs exhaust their drawn-ahead episodes during the rollout, so the pool is topped up
    # between steps (and out of step across envs, since some episodes end by ruin).
    import ai_trading.rl_trading.batched as batched_module

    monkeypatch.setattr(batched_module, "MAX_SLOTS", slots)
    test_batched_env_same_seeds_equals_single_envs_step_for_step("portfolio", 0.98)


def test_batched_env_actions_of_the_wrong_shape_raise_instead_of_broadcasting() -> None:
    cfg, data = env_config("portfolio"), env_data("portfolio")
    venv = make_env(data, cfg, split="train", seed=0, n_envs=3, batched=True)
    venv.reset()
    one_env = np.full(data.n_symbols, 0.5, dtype=np.float32)  # would broadcast to every env
    with pytest.raises(ValueError, match="actions have shape"):
        venv.step(one_env)
