"""Train stable-baselines3 agents on the portfolio environment.

The algorithm (``ppo``, ``sac``, ``a2c``, ``td3``) and its hyperparameters come from ``conf/algo``.
SB3's metrics reach MLflow through a ``KVWriter`` given to SB3's own logger; observations and
rewards are optionally normalised by ``VecNormalize`` (saved with the model); a periodic evaluation
on a validation window (carved from the end of the training split, never the held-out evaluation
split) drives early stopping.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3 import A2C, PPO, SAC, TD3
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback, EvalCallback, StopTrainingOnNoModelImprovement
from stable_baselines3.common.logger import KVWriter, Logger
from stable_baselines3.common.noise import NormalActionNoise
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

from ai_trading.errors import ConfigError
from ai_trading.rl_trading.config import PortfolioEnvConfig
from ai_trading.rl_trading.data import EnvData
from ai_trading.rl_trading.vec import make_env

log = logging.getLogger(__name__)

ALGORITHMS: Mapping[str, type[BaseAlgorithm]] = {"ppo": PPO, "sac": SAC, "a2c": A2C, "td3": TD3}
ON_POLICY = {"ppo": 2048, "a2c": 5}  # SB3's default n_steps (per env) of the on-policy algorithms
MODEL_FILE = "model.zip"
NORMALIZER_FILE = "vecnormalize.pkl"


@dataclass(frozen=True)
class AlgoConfig:
    """One algorithm and how it trains (``conf/algo/<name>.yaml``): the SB3 class and its hyperparameters,
    the budget, the batched width, observation/reward normalisation, and validation-based early stopping."""

    name: str
    total_timesteps: int
    policy: str
    hyperparams: Mapping[str, Any]
    batched: bool  # step the training episodes with the numpy/numba BatchedPortfolioEnv
    n_envs: int  # parallel training episodes
    normalize: bool  # wrap the VecEnv in VecNormalize (saved with the model)
    eval_every: int  # timesteps between validation evaluations; 0 = no periodic evaluation
    patience: int  # evaluations without improvement before stopping early; 0 = never stop early
    progress_bar: bool
    action_noise_sigma: float | None = None  # Gaussian exploration noise (TD3), fraction of the action range

    def __post_init__(self) -> None:
        if self.name not in ALGORITHMS:
            raise ConfigError(f"algo.name={self.name!r} is not one of {sorted(ALGORITHMS)}")
        if self.total_timesteps <= 0:
            raise ConfigError(f"algo.total_timesteps must be positive, got {self.total_timesteps}")
        if self.n_envs < 1:
            raise ConfigError(f"algo.n_envs={self.n_envs}: must be >= 1")


@dataclass
class TrainedAgent:
    """A trained policy with the observation normaliser it was trained with."""

    model: BaseAlgorithm
    normalizer: VecNormalize | None
    timesteps: int

    def save(self, directory: Path) -> list[Path]:
        """Write ``model.zip`` (and ``vecnormalize.pkl``) into ``directory``; returns the files."""
        directory.mkdir(parents=True, exist_ok=True)
        files = [directory / MODEL_FILE]
        self.model.save(files[0])
        if self.normalizer is not None:
            files.append(directory / NORMALIZER_FILE)
            self.normalizer.save(str(files[1]))
        return files

    def act(self, observation: np.ndarray) -> np.ndarray:
        """Deterministic action for a raw (unnormalised) batch of observations."""
        obs = self.normalizer.normalize_obs(observation) if self.normalizer is not None else observation
        action, _ = self.model.predict(obs, deterministic=True)
        return np.asarray(action)


def _wrap(env: VecEnv, normalize: bool, *, training: bool, gamma: float) -> VecEnv:
    if not normalize:
        return env
    return VecNormalize(env, training=training, norm_obs=True, norm_reward=training, gamma=gamma)


def _build_model(algo: AlgoConfig, env: VecEnv, seed: int) -> BaseAlgorithm:
    kwargs = dict(algo.hyperparams)
    if algo.action_noise_sigma:
        dim = int(np.prod(env.action_space.shape or (1,)))
        scale = float(np.max(env.action_space.high))  # type: ignore[attr-defined]
        kwargs["action_noise"] = NormalActionNoise(np.zeros(dim), np.full(dim, algo.action_noise_sigma * scale))
    try:
        return ALGORITHMS[algo.name](algo.policy, env, seed=seed, verbose=0, **kwargs)
    except TypeError as exc:
        raise ConfigError(f"algo={algo.name}: bad hyperparameter in conf/algo/{algo.name}.yaml: {exc}") from exc


class _StopWhen(BaseCallback):
    """Ends training at the next environment step once ``stop()`` is true (a stop signal arrived)."""

    def __init__(self, stop: Callable[[], bool]) -> None:
        super().__init__()
        self.stop = stop

    def _on_step(self) -> bool:
        return not self.stop()


def whole_rollouts(algo: AlgoConfig, n_envs: int) -> int:
    """The training budget rounded up to what the algorithm really trains: whole rollouts of ``n_steps`` per
    env for on-policy algorithms, whole vector steps otherwise (SB3 stops only at those boundaries, so the
    progress bar's total and the logged timesteps are then the real number). Says so once when it rounds."""
    if algo.name in ON_POLICY:
        per_env = int(algo.hyperparams.get("n_steps", ON_POLICY[algo.name]))
        chunk, unit = per_env * n_envs, f"whole rollouts of {n_envs} envs x {per_env} steps"
    else:
        chunk, unit = n_envs, f"whole steps of {n_envs} envs"
    total = -(-algo.total_timesteps // chunk) * chunk
    if total != algo.total_timesteps:
        log.info("algo.total_timesteps=%d rounded up to %d (%s)", algo.total_timesteps, total, unit)
    return total


def train_agent(algo: AlgoConfig, env: PortfolioEnvConfig, data: EnvData, *, seed: int,
                log_formats: Sequence[KVWriter] = (), stop: Callable[[], bool] | None = None) -> TrainedAgent:
    """Train ``algo`` on the training split of ``data``; SB3's metrics go to ``log_formats`` (e.g. the
    tracking package's MLflow writer). Training ends early, at a step boundary, once ``stop()`` is true."""
    gamma = float(algo.hyperparams.get("gamma", 0.99))
    train_env = _wrap(make_env(data, env, split="train", seed=seed, n_envs=algo.n_envs, batched=algo.batched),
                      algo.normalize, training=True, gamma=gamma)
    model = _build_model(algo, train_env, seed)
    model.set_logger(Logger(folder=None, output_formats=list(log_formats)))

    callbacks: list[BaseCallback] = [] if stop is None else [_StopWhen(stop)]
    if algo.eval_every > 0:
        val_env = _wrap(make_env(data, env, split="validation", seed=seed), algo.normalize, training=False,
                        gamma=gamma)
        early_stop = (StopTrainingOnNoModelImprovement(algo.patience, min_evals=1) if algo.patience > 0 else None)
        callbacks.append(EvalCallback(val_env, callback_after_eval=early_stop, n_eval_episodes=1,
                                      eval_freq=max(1, algo.eval_every // train_env.num_envs), deterministic=True,
                                      verbose=0, warn=False))
    total = whole_rollouts(algo, train_env.num_envs)
    log.info("training algo=%s timesteps=%d envs=%d seed=%d", algo.name, total, train_env.num_envs, seed)
    model.learn(total_timesteps=total, callback=callbacks or None, progress_bar=algo.progress_bar)
    normalizer = train_env if isinstance(train_env, VecNormalize) else None
    if normalizer is not None:
        normalizer.training = False
    log.info("trained algo=%s timesteps=%d", algo.name, model.num_timesteps)
    return TrainedAgent(model=model, normalizer=normalizer, timesteps=int(model.num_timesteps))
