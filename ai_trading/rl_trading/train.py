"""Train stable-baselines3 agents on the portfolio environment.

The algorithm (``ppo``, ``sac``, ``a2c``, ``td3``) and its hyperparameters come from ``conf/algo``.
SB3's metrics reach MLflow through a ``KVWriter`` given to SB3's own logger; observations and
rewards are optionally normalised by ``VecNormalize`` (saved with the model); a periodic evaluation
on a validation window (carved from the end of the training split, never the held-out evaluation
split) drives early stopping.
"""

from __future__ import annotations

import inspect
import logging
import math
import re
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
        if not _is_number(self.total_timesteps, 1, None, integer=True):
            raise ConfigError(f"algo.total_timesteps={self.total_timesteps!r}: must be an integer >= 1")
        if not _is_number(self.n_envs, 1, None, integer=True):
            raise ConfigError(f"algo.n_envs={self.n_envs!r}: must be an integer >= 1")
        for key in ("eval_every", "patience"):
            if not _is_number(getattr(self, key), 0, None, integer=True):
                raise ConfigError(f"algo.{key}={getattr(self, key)!r}: must be an integer >= 0")
        if self.policy not in ALGORITHMS[self.name].policy_aliases:
            raise ConfigError(f"algo.policy={self.policy!r}: {ALGORITHMS[self.name].__name__} knows "
                              f"{sorted(ALGORITHMS[self.name].policy_aliases)}")
        if not isinstance(self.hyperparams, Mapping):
            raise ConfigError(f"algo.hyperparams={self.hyperparams!r}: must be a mapping")
        if self.action_noise_sigma is not None and not _is_number(self.action_noise_sigma, 0.0, None):
            raise ConfigError(f"algo.action_noise_sigma={self.action_noise_sigma!r}: must be a number >= 0")
        _check_hyperparams(self.name, self.hyperparams)


def _is_number(value: Any, low: float | None, high: float | None, *, integer: bool = False,
               low_open: bool = False) -> bool:
    if isinstance(value, bool) or not isinstance(value, int if integer else int | float):
        return False
    if not math.isfinite(value):
        return False
    if low is not None and (value <= low if low_open else value < low):
        return False
    return high is None or value <= high


# (integer, low, low excluded, high, what) of the SB3 hyperparameters that must be numbers; SB3 asserts or
# fails deep inside model building or learning on these, after the data has loaded.
_NUMERIC: Mapping[str, tuple[bool, float, bool, float | None, str]] = {
    "learning_rate": (False, 0.0, True, None, "a number > 0"),
    "gamma": (False, 0.0, False, 1.0, "a number in [0, 1]"),
    "gae_lambda": (False, 0.0, False, 1.0, "a number in [0, 1]"),
    "clip_range": (False, 0.0, True, None, "a number > 0"),
    "vf_coef": (False, 0.0, False, None, "a number >= 0"),
    "max_grad_norm": (False, 0.0, True, None, "a number > 0"),
    "tau": (False, 0.0, True, 1.0, "a number in (0, 1]"),
    "n_steps": (True, 1, False, None, "an integer >= 1"),
    "batch_size": (True, 1, False, None, "an integer >= 1"),
    "n_epochs": (True, 1, False, None, "an integer >= 1"),
    "buffer_size": (True, 1, False, None, "an integer >= 1"),
    "learning_starts": (True, 0, False, None, "an integer >= 0"),
    "policy_delay": (True, 1, False, None, "an integer >= 1"),
    "target_update_interval": (True, 1, False, None, "an integer >= 1"),
}
# Set by the trainer itself, never by conf/algo.
_RESERVED = {"policy", "env", "seed", "verbose", "action_noise"}


def _check_hyperparams(name: str, hyperparams: Mapping[str, Any]) -> None:
    """Every key is a parameter of the SB3 class and every numeric one is a number in range, so a typo
    fails here, before any data loads, naming the key."""
    accepted = {p for p in inspect.signature(ALGORITHMS[name].__init__).parameters
                if not p.startswith("_")} - {"self"} - _RESERVED
    for key, value in hyperparams.items():
        where = f"algo.hyperparams.{key}={value!r}"
        if key not in accepted:
            raise ConfigError(f"{where}: not a parameter of {ALGORITHMS[name].__name__}; known: {sorted(accepted)}")
        if key in _NUMERIC:
            integer, low, low_open, high, what = _NUMERIC[key]
            if not _is_number(value, low, high, integer=integer, low_open=low_open):
                raise ConfigError(f"{where}: must be {what}")
        elif key == "ent_coef":
            # SAC also takes "auto" or "auto_<initial value>" (a learned coefficient)
            auto = name == "sac" and isinstance(value, str) and re.fullmatch(r"auto(_\d+(\.\d*)?(e-?\d+)?)?", value)
            if not auto and not _is_number(value, 0.0, None):
                raise ConfigError(f"{where}: must be a number >= 0" + (" or 'auto'" if name == "sac" else ""))
        elif key == "gradient_steps" and not (_is_number(value, 1, None, integer=True) or value == -1):
            raise ConfigError(f"{where}: must be an integer >= 1 or -1 (as many as environment steps)")
        elif key == "train_freq" and not _is_train_freq(value):
            raise ConfigError(f"{where}: must be an integer >= 1 or [n, step|episode]")
        elif key == "policy_kwargs" and not isinstance(value, Mapping):
            raise ConfigError(f"{where}: must be a mapping")


def _is_train_freq(value: Any) -> bool:
    if isinstance(value, Sequence) and not isinstance(value, str):
        return len(value) == 2 and _is_number(value[0], 1, None, integer=True) and value[1] in ("step", "episode")
    return _is_number(value, 1, None, integer=True)


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


def _why_short(total: int, done: int, algo: AlgoConfig, evaluator: EvalCallback | None, *, stopped: bool) -> str:
    """Why training ended before its budget, in the words of the log line that reports it ("" when it did not)."""
    if done >= total:
        return ""
    if stopped:
        return f" of {total}: stopped by a signal"
    best = "" if evaluator is None else f", best validation reward {evaluator.best_mean_reward:.4g}"
    return (f" of {total}: stopped early, no validation improvement in {algo.patience} evaluations"
            f" (every {algo.eval_every} steps){best}")


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
    evaluator: EvalCallback | None = None
    if algo.eval_every > 0:
        val_env = _wrap(make_env(data, env, split="validation", seed=seed), algo.normalize, training=False,
                        gamma=gamma)
        early_stop = (StopTrainingOnNoModelImprovement(algo.patience, min_evals=1) if algo.patience > 0 else None)
        evaluator = EvalCallback(val_env, callback_after_eval=early_stop, n_eval_episodes=1,
                                 eval_freq=max(1, algo.eval_every // train_env.num_envs), deterministic=True,
                                 verbose=0, warn=False)
        callbacks.append(evaluator)
    total = whole_rollouts(algo, train_env.num_envs)
    log.info("training algo=%s timesteps=%d envs=%d seed=%d", algo.name, total, train_env.num_envs, seed)
    model.learn(total_timesteps=total, callback=callbacks or None, progress_bar=algo.progress_bar)
    normalizer = train_env if isinstance(train_env, VecNormalize) else None
    if normalizer is not None:
        normalizer.training = False
    log.info("trained algo=%s timesteps=%d%s", algo.name, model.num_timesteps,
             _why_short(total, int(model.num_timesteps), algo, evaluator, stopped=stop is not None and stop()))
    return TrainedAgent(model=model, normalizer=normalizer, timesteps=int(model.num_timesteps))
