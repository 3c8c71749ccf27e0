"""Out-of-sample evaluation of a trained agent on the held-out tail, next to the baselines.

The agent plays the evaluation episode of :class:`~ai_trading.rl_trading.PortfolioEnv`
deterministically; its applied targets are then replayed through the evaluation module's backtest
with the episode's execution generator state (which reproduces the env's fills exactly), and buy-and-hold, cash
and the trend rule run on the same window, simulator, costs and execution draws.

Every strategy is scored on the whole held-out window, whatever the agent does: a ruin inside it (equity
at or below ``env.ruin_threshold`` times the start) does not shorten the episode; the agent is flat from
the next decision to the window's end (see :class:`~ai_trading.rl_trading.PortfolioEnv`) and the ruin is
reported (:attr:`AgentEvaluation.ruined`, the metric ``eval/rl/ruined`` and a log warning with its bar).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd

from ai_trading.errors import EvaluationError
from ai_trading.evaluation.backtest import BacktestResult, backtest
from ai_trading.evaluation.baselines import TrendConfig, buy_and_hold_weights, cash_weights, trend_weights
from ai_trading.execution import slice_market
from ai_trading.rl_trading.config import PortfolioEnvConfig
from ai_trading.rl_trading.data import EnvData
from ai_trading.rl_trading.env import PortfolioEnv
from ai_trading.rl_trading.episodes import EpisodeRecord
from ai_trading.rl_trading.vec import make_env

log = logging.getLogger(__name__)


class Policy(Protocol):
    """What evaluation needs of an agent (:class:`~ai_trading.rl_trading.train.TrainedAgent`): actions
    for a batch of raw observations, deterministically."""

    def act(self, observation: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class AgentEvaluation:
    """The agent's out-of-sample backtest (``results["rl"]``) and the baselines on the same window, with
    the evaluation episode they replay."""

    results: dict[str, BacktestResult]
    record: EpisodeRecord

    @property
    def ruined(self) -> bool:
        return self.record.ruin_step is not None

    @property
    def ruin_timestamp(self) -> pd.Timestamp | None:
        """The bar whose close marked the agent's ruin (None: no ruin)."""
        return self.record.ruin_timestamp

    def metrics(self, prefix: str = "eval") -> dict[str, float]:
        """``{prefix}/rl/ruined``: 1.0 if the agent was ruined inside the window, else 0.0."""
        return {f"{prefix}/rl/ruined": float(self.ruined)}


def play_eval_episode(data: EnvData, env_config: PortfolioEnvConfig, agent: Policy, *, seed: int) -> EpisodeRecord:
    """Run the agent deterministically over the held-out evaluation episode and return its record."""
    venv = make_env(data, env_config, split="eval", seed=seed)
    env = venv.envs[0].unwrapped  # type: ignore[attr-defined]
    assert isinstance(env, PortfolioEnv)
    obs, _ = env.reset(seed=seed)
    done = False
    while not done:
        action = agent.act(obs[None, :])[0]
        obs, _, terminated, truncated, _ = env.step(action)
        done = terminated or truncated
    return env.episode_record()


def evaluate_agent(data: EnvData, env_config: PortfolioEnvConfig, trend: TrendConfig, agent: Policy, *,
                   seed: int) -> AgentEvaluation:
    """The agent's out-of-sample backtest (``rl``) and the baselines (``trend`` the trend rule's settings), all
    over the whole held-out window."""
    record = play_eval_episode(data, env_config, agent, seed=seed)
    T = data.market.shape[0]
    if record.start != data.n_train - 1 or record.n_steps != T - data.n_train:
        raise EvaluationError(f"the evaluation episode covers decision rows {record.start}.."
                              f"{record.start + record.n_steps - 1}, not the held-out window "
                              f"{data.n_train - 1}..{T - 2}")
    start, stop = record.start, record.start + record.n_steps + 1
    window = slice_market(data.market, start, stop)
    ppy = data.market.frequency.periods_per_year
    targets = np.zeros((record.n_steps + 1, len(record.symbols)))
    targets[:-1] = record.weights
    candidates = {
        "rl": targets,
        "buy_and_hold": buy_and_hold_weights(window),
        "cash": cash_weights(window),
        "trend": trend_weights(data.market, trend, ppy, start, stop),
    }
    results = {
        name: backtest(window, data.params, weights, initial_cash=record.initial_cash,
                       rng=record.exec_rng(), name=name, ppy=ppy)
        for name, weights in candidates.items()
    }
    if record.n_steps and not np.allclose(results["rl"].equity.to_numpy()[1:], record.equity, rtol=0, atol=1e-6):
        raise EvaluationError("replaying the agent's targets did not reproduce its evaluation episode's equity")
    evaluation = AgentEvaluation(results, record)
    if evaluation.ruined:
        log.warning("evaluation agent ruined at=%s step=%d of %d equity=%.2f threshold=%.4f; flat from the next "
                    "decision to the window's end", record.ruin_timestamp, record.ruin_step, record.n_steps,
                    record.equity[record.ruin_step], env_config.ruin_threshold)
    log.info("evaluated agent window=[%s, %s] steps=%d net_return=%.4f ruined=%d", window.timestamps[0],
             window.timestamps[-1], record.n_steps, results["rl"].metrics["total_return"], int(evaluation.ruined))
    return evaluation
