"""Out-of-sample evaluation of a trained agent on the held-out tail, next to the baselines.

The agent plays the evaluation episode of :class:`~ai_trading.rl_trading.PortfolioEnv`
deterministically; its applied targets are then replayed through the evaluation module's backtest
with the episode's execution generator state (which reproduces the env's fills exactly), and buy-and-hold, cash
and the trend rule run on the same window, simulator, costs and execution draws.
"""

from __future__ import annotations

import logging

import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig

from ai_trading.errors import EvaluationError
from ai_trading.evaluation.backtest import BacktestResult, backtest
from ai_trading.evaluation.baselines import TrendConfig, buy_and_hold_weights, cash_weights, trend_weights
from ai_trading.execution import slice_market
from ai_trading.rl_trading.env import PortfolioEnv, make_env
from ai_trading.rl_trading.state import EnvData, EpisodeRecord
from ai_trading.rl_trading.train import TrainedAgent

log = logging.getLogger(__name__)


def play_eval_episode(cfg: DictConfig, data: EnvData, agent: TrainedAgent, *, seed: int) -> EpisodeRecord:
    """Run the agent deterministically over the held-out evaluation episode and return its record."""
    venv = make_env(cfg, split="eval", seed=seed, data=data)
    env = venv.envs[0].unwrapped  # type: ignore[attr-defined]
    assert isinstance(env, PortfolioEnv)
    obs, _ = env.reset(seed=seed)
    done = False
    while not done:
        action = agent.act(obs[None, :])[0]
        obs, _, terminated, truncated, _ = env.step(action)
        done = terminated or truncated
    return env.episode_record()


def evaluate_agent(cfg: DictConfig, data: EnvData, agent: TrainedAgent, *, seed: int) -> dict[str, BacktestResult]:
    """The agent's out-of-sample backtest (``rl``) and the baselines on the same window."""
    record = play_eval_episode(cfg, data, agent, seed=seed)
    start, stop = record.start, record.start + record.n_steps + 1
    window = slice_market(data.market, start, stop)
    ppy = data.market.frequency.periods_per_year
    targets = np.zeros((record.n_steps + 1, len(record.symbols)))
    targets[:-1] = record.weights
    trend_cfg: TrendConfig = instantiate(cfg.baselines.trend, _convert_="all")
    candidates = {
        "rl": targets,
        "buy_and_hold": buy_and_hold_weights(window),
        "cash": cash_weights(window),
        "trend": trend_weights(data.market, trend_cfg, ppy, start, stop),
    }
    results = {
        name: backtest(window, data.params, weights, initial_cash=record.initial_cash,
                       rng=record.exec_rng(), name=name, ppy=ppy)
        for name, weights in candidates.items()
    }
    if record.n_steps and not np.allclose(results["rl"].equity.to_numpy()[1:], record.equity, rtol=0, atol=1e-6):
        raise EvaluationError("replaying the agent's targets did not reproduce its evaluation episode's equity")
    log.info("evaluated agent window=[%s, %s] steps=%d net_return=%.4f", window.timestamps[0],
             window.timestamps[-1], record.n_steps, results["rl"].metrics["total_return"])
    return results
