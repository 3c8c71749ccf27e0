"""The pyfunc's RL input is the env's own observation and its output the weights the env applies: at every
step of a real evaluation episode, the rows a caller would pass (features at the decision row, current
weights, unrealised PnL, drawdown) rebuild the env's observation, and the predicted targets equal the
constrained weights the env traded to."""

from __future__ import annotations

import numpy as np
import pandas as pd
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import DummyVecEnv

from ai_trading.artifacts.manifest import Manifest
from ai_trading.artifacts.pyfunc import PolicyModel
from ai_trading.rl_trading.env import PortfolioEnv
from ai_trading.rl_trading.kernels import I_T
from ai_trading.rl_trading.train import TrainedAgent
from tests.rl_trading.conftest import dataset, env_config, env_data


def test_pyfunc_observation_and_targets_equal_the_envs_along_an_episode() -> None:
    config = env_config("long_short", "env.max_position=0.7", "env.max_leverage=1.0")
    data = env_data("long_short")
    env = PortfolioEnv(data, config, split="eval")
    agent = TrainedAgent(PPO("MlpPolicy", DummyVecEnv([lambda: PortfolioEnv(data, config, split="eval")]), seed=3,
                             device="cpu"), None, 0)
    base = tuple(dataset().features.feature_names)
    symbols = list(data.market.symbols)
    policy = {"algo": "ppo", "symbols": symbols, "feature_names": list(base), "long_only": config.long_only,
              "max_position": config.max_position, "max_leverage": config.max_leverage}
    manifest = Manifest(kind="rl", files={"x": "0"}, feature_schema_hash="f", dataset_fingerprint="d",
                        cost_model_hash="c", config_hash="h", git_commit="g", git_dirty=False, seed=0, sweep_id="s",
                        run_id="r", metrics={}, created_at="2026-01-01T00:00:00Z", key_id="k", algorithm="ed25519",
                        dev_key=False, policy=policy)
    model = PolicyModel(manifest, agent)
    N, F = len(symbols), len(base)
    nf = N * F
    obs, _ = env.reset(seed=0)
    for k in range(25):
        t = int(env._ist[0, I_T])
        frame = pd.DataFrame(data.features[t].reshape(N, F), index=pd.Index(symbols, name="symbol"),
                             columns=list(base))
        frame["weight"] = obs[nf + 1: nf + 1 + N]
        frame["unrealized_pnl"] = obs[nf + 1 + N + 3]
        frame["drawdown"] = obs[nf + 1 + N + 4]
        np.testing.assert_allclose(model.observation(frame), obs, rtol=0, atol=1e-6)
        targets = model.predict(frame)["target_weight"].to_numpy()
        # the bound array entry (the live loop's) on the rows in another symbol order gives the same targets
        shuffled = frame.iloc[::-1]
        bound = model.rows(list(shuffled.index), list(base)).weights(
            shuffled[list(base)].to_numpy(), shuffled["weight"].to_numpy(), float(obs[nf + 1 + N + 3]),
            float(obs[nf + 1 + N + 4]))
        np.testing.assert_array_equal(bound[::-1], targets)
        obs, _, terminated, truncated, _ = env.step(agent.act(obs[None, :])[0])
        np.testing.assert_allclose(targets, env.episode_record().weights[k], rtol=0, atol=1e-6)
        assert not (terminated or truncated)
