"""PortfolioEnv: API conformance, reward accounting, constraints, reproducibility, replay, causality."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from ai_trading.execution.market import slice_market
from ai_trading.execution.vectorized import run_targets
from ai_trading.rl_trading import PortfolioEnv, make_env
from tests.rl_trading.conftest import ENV_CONFIGS, dataset, env_config, env_data, job


def _env(name: str = "portfolio", *overrides: str, split: str = "train") -> PortfolioEnv:
    return PortfolioEnv(env_data(name, *overrides), env_config(name, *overrides), split=split)  # type: ignore[arg-type]


def _run_episode(env: PortfolioEnv, seed: int, action_seed: int) -> tuple[list[float], list[np.ndarray]]:
    obs, _ = env.reset(seed=seed)
    rng = np.random.default_rng(action_seed)
    rewards, observations = [], [obs]
    done = False
    while not done:
        action = rng.uniform(env.action_space.low, env.action_space.high).astype(np.float32)
        obs, reward, terminated, truncated, _ = env.step(action)
        rewards.append(reward)
        observations.append(obs)
        done = terminated or truncated
    return rewards, observations


@pytest.mark.parametrize("name", ENV_CONFIGS)
def test_portfolio_env_each_config_passes_gymnasium_and_sb3_check_env(name: str) -> None:
    env = _env(name, "env.episode_length=20")
    gym_check_env(env, skip_render_check=True)
    sb3_check_env(_env(name, "env.episode_length=20"), warn=False)


@pytest.mark.parametrize(("kind", "name"), [("log", "portfolio"), ("simple", "long_short")])
def test_reward_zero_penalties_sums_to_equity_change_from_fills(kind: str, name: str) -> None:
    overrides = ("env.episode_length=60", f"env.reward.kind={kind}", "env.reward.leverage_penalty=0.0",
                 "env.initial_cash=50000000.0")  # large enough that some orders hit the participation cap
    env = _env(name, *overrides)
    rewards, _ = _run_episode(env, seed=11, action_seed=2)
    rec = env.episode_record()
    # Equity rebuilt from the fills alone: cash pays signed notional plus fees and receives the financing of
    # the book held from each decision close to the next bar (the preset's annual rates, ACT/365); positions
    # are summed fills, marked at the raw bars' close of the last execution bar.
    sim = job().research.simulator
    bars = dataset().bars.frame["close"]
    signed_notional = np.sign(rec.qty) * rec.notional
    held_cash = np.concatenate(([rec.initial_cash], rec.cash[:-1]))
    held = np.vstack([np.zeros(len(rec.symbols)), rec.positions[:-1]])
    closes = np.array([[bars.loc[(t, s)] for s in rec.symbols] for t in rec.timestamps])
    years = (rec.exec_timestamps - rec.timestamps).total_seconds().to_numpy() / (365 * 86_400)
    rate = np.where(held_cash >= 0, sim.risk_free_annual_bps,
                    sim.risk_free_annual_bps + sim.margin_spread_annual_bps) * 1e-4
    short_value = (np.maximum(-held, 0.0) * closes).sum(axis=1)
    financing = years * (rate * held_cash - sim.borrow_fee_annual_bps * 1e-4 * short_value)
    assert financing.sum() != 0.0
    np.testing.assert_allclose(rec.financing, financing, rtol=1e-10, atol=0)
    cash = rec.initial_cash - signed_notional.sum() - rec.fee.sum() + financing.sum()
    positions = rec.qty.sum(axis=0)
    last_close = np.array([bars.loc[(rec.exec_timestamps[-1], s)] for s in rec.symbols])
    equity_end = cash + float(positions @ last_close)
    if kind == "log":
        expected = np.log(equity_end / rec.initial_cash)
    else:
        expected = (equity_end - rec.initial_cash) / rec.initial_cash
    assert sum(rewards) == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert (rec.qty != 0).any()


_BIG = float(np.finfo(np.float32).max)  # extremes up to float32's largest finite value


@settings(max_examples=40, deadline=None)
@given(actions=arrays(np.float32, (5, 2), elements=st.floats(-_BIG, _BIG, width=32, allow_nan=False)))
def test_constraints_any_action_never_exceed_position_and_leverage_limits(actions: np.ndarray) -> None:
    env = _env("long_short", "env.episode_length=10", "env.max_leverage=0.8")
    long_only = _env("portfolio", "env.episode_length=10", "env.max_position=0.6")
    for e, max_pos, max_lev in ((env, 0.5, 0.8), (long_only, 0.6, 1.0)):
        e.reset(seed=0)
        for a in actions:
            e.step(a)
        w = e.episode_record().weights
        assert np.all(np.abs(w) <= max_pos * (1 + 1e-12))
        assert np.all(np.abs(w).sum(axis=1) <= max_lev * (1 + 1e-12))
        if e.config.long_only:
            assert np.all(w >= 0.0)


def test_reset_same_seed_gives_same_episodes_other_seed_differs() -> None:
    a, b = _env("portfolio", "env.episode_length=15"), _env("portfolio", "env.episode_length=15")
    first = [_run_episode(a, seed=5, action_seed=k) for k in range(2)]
    second = [_run_episode(b, seed=5, action_seed=k) for k in range(2)]
    for (ra, oa), (rb, ob) in zip(first, second, strict=True):
        assert ra == rb
        np.testing.assert_array_equal(np.array(oa), np.array(ob))
    r5, _ = _run_episode(a, seed=5, action_seed=0)
    r6, _ = _run_episode(b, seed=6, action_seed=0)
    assert r5 != r6


def test_episode_record_replayed_through_run_targets_reproduces_equity_exactly() -> None:
    env = _env("long_short", "env.episode_length=80", "env.initial_cash=30000000.0")
    _run_episode(env, seed=3, action_seed=4)
    rec = env.episode_record()
    window = slice_market(env.data.market, rec.start, rec.start + rec.n_steps + 1)
    targets = np.zeros((rec.n_steps + 1, len(rec.symbols)))
    targets[:-1] = rec.weights
    seq = run_targets(window, env.data.params, targets, rec.exec_rng(),
                      initial_cash=rec.initial_cash)
    np.testing.assert_array_equal(seq.equity[1:], rec.equity)
    np.testing.assert_array_equal(seq.cash[1:], rec.cash)
    np.testing.assert_array_equal(seq.positions[1:], rec.positions)
    np.testing.assert_array_equal(seq.fee[1:], rec.fee)
    np.testing.assert_array_equal(seq.financing[1:], rec.financing)
    assert (rec.financing != 0.0).all()


def test_eval_split_one_deterministic_episode_over_held_out_tail_only() -> None:
    data = env_data("portfolio")
    venv = make_env(data, env_config("portfolio", "env.episode_length=30"), split="eval", seed=0)
    assert venv.num_envs == 1
    venv.reset()
    n, done = 0, False
    while not done:
        _, _, dones, _ = venv.step(np.full((1, data.n_symbols), 0.5, np.float32))
        done, n = bool(dones[0]), n + 1
    rec = venv.env_method("episode_record")[0]
    T = data.market.shape[0]
    assert n == T - data.n_train
    assert rec.exec_timestamps[0] == data.market.timestamps[data.n_train]
    assert rec.exec_timestamps[-1] == data.market.timestamps[-1]
    train = _env("portfolio", "env.episode_length=30")
    for seed in range(20):
        train.reset(seed=seed)
        train.step(np.zeros(data.n_symbols, np.float32))
        assert train.episode_record().exec_timestamps[-1] < data.market.timestamps[data.n_train]
    assert train.layout.hi + train.layout.length <= data.n_train - 1


def test_observation_features_at_t_equal_builder_rows_at_t() -> None:
    env = _env("portfolio", "env.episode_length=10")
    obs, _ = env.reset(seed=1)
    start = env._start
    stamp = env.data.market.timestamps[start]
    frame = dataset().features.frame
    expected = np.concatenate([frame.loc[(stamp, s)].to_numpy() for s in env.data.market.symbols])
    np.testing.assert_array_equal(obs[: expected.size], expected.astype(np.float32))
    # Flat book at reset: all cash, no exposure, no drawdown.
    state = obs[expected.size :]
    np.testing.assert_array_equal(state, np.r_[1.0, np.zeros(env.data.n_symbols), 0.0, 0.0, 0.0, 0.0, 0.0])
    with pytest.raises(gym.error.ResetNeeded):
        PortfolioEnv(env.data, env.config).step(np.zeros(env.data.n_symbols, np.float32))
