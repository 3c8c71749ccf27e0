"""Throughput of the portfolio RL environments: raw steps/s next to CartPole, the share of PPO time spent
in the env, and PPO training steps/s on DummyVecEnv(PortfolioEnv) vs the batched VecEnv.

Run: ``python benchmarks/bench_env.py [--symbols 5] [--ppo-steps 200000]``. Goals (2-core machine): raw
single env >= 0.5x CartPole, < 5% of PPO time in the env, batched >= 1M env-steps/s at 64 envs, PPO on
the batched env >= 10x PPO on the single env. It also measures PPO on the batched env with 1 and 2 torch
threads, alone and next to a competing job doing the same (a second seed of a sweep on the same machine):
the figures behind the default ``torch_threads``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from hydra import compose, initialize_config_dir
from stable_baselines3 import PPO
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, VecEnvWrapper
from stable_baselines3.common.vec_env.base_vec_env import VecEnvObs, VecEnvStepReturn

from ai_trading.paths import CONF_DIR
from ai_trading.pipeline import build_costs, build_dataset
from ai_trading.rl_trading import EnvData, PortfolioEnv, make_env
from ai_trading.wiring import train_config

SYMBOLS = ["SP500", "NASDAQ", "NVDA", "ORCL", "YHOO"]
# The same PPO hyperparameters for both runs (n_steps is per env): every minibatch is full in both, so each
# sample costs the same gradient work and the speed-up measures collection (env + batched policy calls).
# batch_size 1024 is the trainer's own (conf/algo/ppo.yaml); n_steps = batch_size keeps every minibatch full.
REPEATS = 5  # raw and batched rates: best of this many timed windows
PPO_COMMON = {"n_steps": 1024, "batch_size": 1024, "n_epochs": 4, "policy_kwargs": {"net_arch": [64, 64]}}


class TimedVecEnv(VecEnvWrapper):
    """Accumulates wall time spent inside the wrapped VecEnv's reset and step."""

    def __init__(self, venv: VecEnv) -> None:
        super().__init__(venv)
        self.seconds = 0.0

    def reset(self) -> VecEnvObs:
        t = time.perf_counter()
        obs = self.venv.reset()
        self.seconds += time.perf_counter() - t
        return obs

    def step_wait(self) -> VecEnvStepReturn:
        t = time.perf_counter()
        out = self.venv.step_wait()
        self.seconds += time.perf_counter() - t
        return out


class TimedEnv(gym.Wrapper):
    """Accumulates wall time inside the wrapped env's own step and reset (no SB3 plumbing)."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.seconds = 0.0

    def step(self, action: Any) -> Any:
        t = time.perf_counter()
        out = self.env.step(action)
        self.seconds += time.perf_counter() - t
        return out

    def reset(self, **kwargs: Any) -> Any:
        t = time.perf_counter()
        out = self.env.reset(**kwargs)
        self.seconds += time.perf_counter() - t
        return out


def raw_rate(env: gym.Env, steps: int, repeats: int = REPEATS) -> float:
    """Best of ``repeats`` timed windows of ``steps`` steps (the usual guard against a noisy machine)."""
    env.reset(seed=0)
    action = env.action_space.sample()
    best = 0.0
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(steps):
            _, _, terminated, truncated, _ = env.step(action)
            if terminated or truncated:
                env.reset()
        best = max(best, steps / (time.perf_counter() - t))
    return best


def batched_rate(venv: VecEnv, repeats: int = REPEATS, window_s: float = 1.5) -> float:
    """Env-steps/s of the VecEnv on varied actions, best of ``repeats`` windows of ``window_s`` seconds.

    A window spans many episodes, so the episode draws it includes (the pool is topped up every few
    episodes, tens of ms at a time) are a share of its time within about 2%, whichever window wins.
    """
    venv.reset()
    rng = np.random.default_rng(0)
    width = int(np.prod(venv.action_space.shape or (1,)))
    actions = rng.uniform(0.0, 0.4, (64, venv.num_envs, width)).astype(np.float32)
    for k in range(50):
        venv.step(actions[k % 64])
    best = 0.0
    for _ in range(repeats):
        steps = 0
        t = time.perf_counter()
        while (elapsed := time.perf_counter() - t) < window_s:
            for k in range(100):
                venv.step(actions[k % 64])
            steps += 100
        best = max(best, steps * venv.num_envs / elapsed)
    return best


def ppo_rate(venv: VecEnv, total: int, kwargs: dict, inner: TimedEnv | None = None) -> tuple[float, float, float]:
    """PPO steps/s, the share of its time inside the VecEnv, and inside ``inner`` (the bare env) if given."""
    timed = TimedVecEnv(venv)
    model = PPO("MlpPolicy", timed, seed=0, device="cpu", verbose=0, **kwargs)
    model.learn(total_timesteps=min(total, 2 * kwargs["n_steps"] * venv.num_envs))  # warm-up (torch, numba)
    timed.seconds = 0.0
    if inner is not None:
        inner.seconds = 0.0
    t = time.perf_counter()
    model.learn(total_timesteps=total, reset_num_timesteps=True)
    elapsed = time.perf_counter() - t
    bare = (inner.seconds if inner is not None else timed.seconds) / elapsed
    return model.num_timesteps / elapsed, timed.seconds / elapsed, bare


def contended_rates(args: argparse.Namespace, venv_of: Any) -> None:
    """PPO steps/s on the batched env per torch thread count, alone and with a competing PPO process."""
    for threads in (1, 2):
        torch.set_num_threads(threads)
        alone, _, _ = ppo_rate(venv_of(), args.ppo_steps, PPO_COMMON)
        competitor = subprocess.Popen([sys.executable, __file__, "--compete", "--torch-threads", str(threads),
                                       "--symbols", str(args.symbols)], stdout=subprocess.PIPE, text=True)
        assert competitor.stdout is not None
        competitor.stdout.readline()  # "ready": its data is built and it is training
        try:
            together, _, _ = ppo_rate(venv_of(), args.ppo_steps, PPO_COMMON)
        finally:
            competitor.terminate()
            competitor.wait(timeout=60)
        print(f"PPO batched(64 envs) torch_threads={threads}  alone {alone:>9,.0f} steps/s   "
              f"with a competing job {together:>9,.0f} steps/s   ratio {together / alone:.2f}")


def compete(venv: VecEnv) -> None:
    """The competing job: PPO on the batched env until terminated."""
    model = PPO("MlpPolicy", venv, seed=1, device="cpu", verbose=0, **PPO_COMMON)
    model.learn(total_timesteps=PPO_COMMON["n_steps"] * venv.num_envs)
    print("ready", flush=True)
    while True:
        model.learn(total_timesteps=PPO_COMMON["n_steps"] * venv.num_envs, reset_num_timesteps=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--symbols", type=int, default=5)
    parser.add_argument("--raw-steps", type=int, default=200_000)
    parser.add_argument("--ppo-steps", type=int, default=200_000)
    parser.add_argument("--torch-threads", type=int, default=1,
                        help="torch intra-op threads for the single-vs-batched PPO runs (the trainer's default)")
    parser.add_argument("--compete", action="store_true", help=argparse.SUPPRESS)  # the competing job
    args = parser.parse_args()
    torch.set_num_threads(args.torch_threads)
    symbols = SYMBOLS[: args.symbols]
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose(config_name="train", overrides=[f"data.symbols=[{','.join(symbols)}]",
                                                      "data.start=1999-01-22", "data.end=2014-12-31"])
    train = train_config(cfg)
    research = train.research
    dataset = build_dataset(research.data, research.features)
    execution = build_costs(dataset, research.simulator, research.cost_model)
    config = train.env
    data = EnvData.build(execution.market, execution.params, dataset.features, config.eval_fraction)
    def batched_venv() -> VecEnv:
        return make_env(data, config, split="train", seed=0, n_envs=64, batched=True)

    if args.compete:
        compete(batched_venv())
        return
    print(f"portfolio env: {data.n_symbols} symbols, {data.market.shape[0]} daily bars, obs {data.obs_size}, "
          f"episode {config.episode_length} steps")

    cart = raw_rate(gym.make("CartPole-v1").unwrapped, args.raw_steps // REPEATS)
    single = raw_rate(PortfolioEnv(data, config), args.raw_steps // REPEATS)
    print(f"raw steps/s      CartPole-v1 {cart:>11,.0f}   PortfolioEnv {single:>11,.0f}   ratio {single / cart:.2f}")
    for n in (16, 64, 256):
        venv = make_env(data, config, split="train", seed=0, n_envs=n, batched=True)
        rate = batched_rate(venv)
        print(f"batched          n_envs={n:<4} {rate:>13,.0f} env-steps/s")

    inner = TimedEnv(PortfolioEnv(data, config))
    single_venv = DummyVecEnv([lambda: Monitor(inner)])
    single_venv.seed(0)
    ppo_single, share_single, bare_single = ppo_rate(single_venv, args.ppo_steps // 10, PPO_COMMON, inner)
    ppo_batched, share_batched, _ = ppo_rate(make_env(data, config, split="train", seed=0, n_envs=64, batched=True),
                                             args.ppo_steps, PPO_COMMON)
    print(f"PPO hyperparameters (both runs): {PPO_COMMON}")
    print(f"PPO DummyVecEnv(1 env) {ppo_single:>9,.0f} steps/s  env share {100 * bare_single:.1f}% "
          f"(PortfolioEnv.step itself), {100 * share_single:.1f}% with SB3's DummyVecEnv + Monitor")
    print(f"PPO batched(64 envs)   {ppo_batched:>9,.0f} steps/s  env share {100 * share_batched:.1f}%")
    print(f"PPO speed-up batched / single: {ppo_batched / ppo_single:.1f}x")
    contended_rates(args, batched_venv)


if __name__ == "__main__":
    main()
