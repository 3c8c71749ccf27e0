"""Reinforcement learning on the portfolio: the gymnasium env, its batched VecEnv and ``make_env``."""

from ai_trading.rl_trading.batched import BatchedPortfolioEnv
from ai_trading.rl_trading.config import PortfolioEnvConfig, RewardConfig
from ai_trading.rl_trading.data import EnvData
from ai_trading.rl_trading.env import PortfolioEnv
from ai_trading.rl_trading.episodes import EpisodeRecord
from ai_trading.rl_trading.vec import make_env

__all__ = [
    "BatchedPortfolioEnv",
    "EnvData",
    "EpisodeRecord",
    "PortfolioEnv",
    "PortfolioEnvConfig",
    "RewardConfig",
    "make_env",
]
