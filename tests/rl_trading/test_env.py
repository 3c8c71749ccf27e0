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


def _run_episode(env: PortfolioEnv, seed: int | None, action_seed: int) -> tuple[list[float], list[np.ndarray]]:
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


def _first_exec_row(name: str, split: str, *overrides: str) -> int:
    env = _env(name, *overrides, split=split)
    env.reset(seed=0)
    env.step(np.zeros(env.data.n_symbols, np.float32))
    return env.episode_record().start + 1


@pytest.mark.parametrize("name", ENV_CONFIGS)
def test_training_episodes_never_fill_on_validation_or_held_out_rows_and_reach_the_last_allowed_row(
        name: str) -> None:
    # Whole episodes of random trading, several seeds: every execution row of every training episode is
    # observed. Episodes almost as long as the training span leave few start rows, so the draws reach the
    # boundary and an off-by-one either way (a fill on the first validation row, or the last training row
    # never used) fails. No ruin: episodes run to their end.
    data = env_data(name)
    validation_row = _first_exec_row(name, "validation")
    assert validation_row < data.n_train == _first_exec_row(name, "eval")
    cases = [(("env.ruin_threshold=0.0", f"env.episode_length={validation_row - 4}"), 4),
             (("env.ruin_threshold=0.0",), 8)]
    for overrides, episodes in cases:
        env = _env(name, *overrides)
        last_row, first_row = -1, data.market.shape[0]
        for seed in range(5):
            for episode in range(episodes):
                _run_episode(env, seed=seed if episode == 0 else None, action_seed=100 * seed + episode)
                rec = env.episode_record()
                rows = rec.start + 1 + np.arange(rec.n_steps)
                assert rec.n_steps == env.layout.length
                assert rows[-1] < validation_row
                filled = rows[(rec.qty != 0).any(axis=1)]
                assert len(filled) and filled.max() < validation_row
                assert rec.exec_timestamps[-1] < data.market.timestamps[validation_row]
                last_row, first_row = max(last_row, int(rows[-1])), min(first_row, int(rows[0]))
        if episodes == 4:
            assert last_row == validation_row - 1  # the boundary is reached, not just respected
            assert first_row == 1  # the first decision row is 0
def _churn(env: PortfolioEnv) -> tuple[int, list[tuple[bool, bool]]]:
    """All in one symbol, then all in the other, until the episode ends: costs every bar."""
    env.reset(seed=1)
    flags, k, done = [], 0, False
    while not done:
        action = np.zeros(env.data.n_symbols, np.float32)
        action[k % env.data.n_symbols] = 1.0
        _, _, terminated, truncated, _ = env.step(action)
        flags.append((terminated, truncated))
        done, k = terminated or truncated, k + 1
    return k, flags


def test_ruin_terminates_a_training_episode_but_validation_and_eval_run_flat_to_their_end() -> None:
    ruin = ("env.ruin_threshold=0.999", "env.episode_length=200")
    train = _env("portfolio", *ruin)
    n, flags = _churn(train)
    rec = train.episode_record()
    assert flags[-1] == (True, False) and n < 200
    assert rec.ruin_step == n - 1 and rec.equity[-1] <= 0.999 * rec.initial_cash
    for split in ("validation", "eval"):
        env = _env("portfolio", *ruin, split=split)
        n, flags = _churn(env)
        rec = env.episode_record()
        assert n == env.layout.length and flags == [(False, False)] * (n - 1) + [(False, True)]
        assert rec.ruin_step is not None and rec.ruin_step < n - 10
        k = rec.ruin_step
        assert rec.equity[k] <= 0.999 * rec.initial_cash < np.r_[rec.initial_cash, rec.equity[:k]].min()
        assert (rec.weights[:k + 1].sum(axis=1) > 0).all() and (rec.weights[k + 1:] == 0).all()
        assert (rec.positions[-1] == 0).all()
        # The recorded (forced-flat) targets replay bit for bit.
        window = slice_market(env.data.market, rec.start, rec.start + rec.n_steps + 1)
        targets = np.zeros((rec.n_steps + 1, len(rec.symbols)))
        targets[:-1] = rec.weights
        seq = run_targets(window, env.data.params, targets, rec.exec_rng(), initial_cash=rec.initial_cash)
        np.testing.assert_array_equal(seq.equity[1:], rec.equity)
        np.testing.assert_array_equal(seq.positions[1:], rec.positions)


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
