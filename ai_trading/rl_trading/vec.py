"""The vectorised env of a split: the one way training, validation, evaluation and the benchmarks build it."""

from __future__ import annotations

import logging

from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv

from ai_trading.rl_trading.batched import BatchedPortfolioEnv
from ai_trading.rl_trading.config import PortfolioEnvConfig
from ai_trading.rl_trading.data import EnvData
from ai_trading.rl_trading.env import PortfolioEnv, Split

log = logging.getLogger(__name__)


def make_env(data: EnvData, config: PortfolioEnvConfig, *, split: Split, seed: int, n_envs: int = 1,
             batched: bool = False) -> VecEnv:
    """The VecEnv of ``split`` on ``data``, seeded so env i starts from ``seed + i``.

    ``train``: ``n_envs`` random windows of the first ``1 - eval_fraction`` of the timeline less its validation
    tail, stepped together by :class:`BatchedPortfolioEnv` when ``batched``, else a DummyVecEnv of
    Monitor-wrapped :class:`PortfolioEnv` (the two agree step for step). ``validation`` (early stopping) and
    ``eval`` (held-out test): one env, one deterministic episode.
    """
    n = n_envs if split == "train" else 1
    use_batched = split == "train" and batched
    venv: VecEnv
    if use_batched:
        venv = BatchedPortfolioEnv(data, config, n_envs=n)
    else:
        venv = DummyVecEnv([lambda: Monitor(PortfolioEnv(data, config, split=split)) for _ in range(n)])
    venv.seed(seed)
    log.info("env ready split=%s n_envs=%d batched=%s seed=%d obs=%d symbols=%s", split, n,
             use_batched, seed, data.obs_size, ",".join(data.market.symbols))
    return venv
