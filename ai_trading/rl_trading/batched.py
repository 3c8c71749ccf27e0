"""Many portfolio episodes stepped together: a numpy/numba stable-baselines3 ``VecEnv``.

Env i is :class:`ai_trading.rl_trading.PortfolioEnv` seeded with ``seed + i``: the same generator, the same
episode draws (:meth:`ai_trading.rl_trading.episodes.EpisodePool.refill`) and the same compiled step, but one
kernel call steps all of them. Episodes are drawn ahead into an :class:`~ai_trading.rl_trading.episodes.EpisodePool`
(each env in its own draw order), so the kernel starts an env's next episode itself and Python
only tops the pool up when some env has used all of its drawn episodes. Like ``VecMonitor`` it reports
``info["episode"]`` (return, length, time) at the end of each episode, plus ``terminal_observation`` and
``TimeLimit.truncated`` as SB3 expects.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.utils import seeding
from stable_baselines3.common.vec_env import VecEnv
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvObs, VecEnvStepReturn

from ai_trading.execution.kernels import N_FILL
from ai_trading.rl_trading.config import PortfolioEnvConfig
from ai_trading.rl_trading.data import EnvData, EpisodeLayout
from ai_trading.rl_trading.env import action_space, observation_space, start_episodes
from ai_trading.rl_trading.episodes import EpisodePool
from ai_trading.rl_trading.kernels import (
    F_EQUITY,
    I_PEND,
    N_FST,
    N_IST,
    N_RECS,
    TRUNCATED,
    config_vector,
    env_step,
)

log = logging.getLogger(__name__)

POOL_VALUES = 1_000_000  # noise slots in the pool: bounds the episodes drawn ahead (memory, ~16 MB)
MAX_SLOTS = 16


class BatchedPortfolioEnv(VecEnv):
    """``n_envs`` training episodes of :class:`PortfolioEnv` in one set of (B, N) arrays."""

    def __init__(self, data: EnvData, config: PortfolioEnvConfig, *, n_envs: int, split: str = "train") -> None:
        self.data = data
        self.config = config
        self.layout = EpisodeLayout.of(data, config, split)
        self.render_mode = None
        B, N, L = n_envs, data.n_symbols, self.layout.length
        self._cv = config_vector(config, split)
        self._mk, self._feats = data.packed, data.features
        self._scale, self._p = data.params.impact_scale, data.params.values
        self._act = np.zeros((B, N))
        slots = max(2, min(MAX_SLOTS, 1 + POOL_VALUES // (B * L * N)))
        self._pool = EpisodePool(B, slots, self.layout, N)
        self._ist = np.zeros((B, N_IST), dtype=np.int64)
        self._fst = np.zeros((B, N_FST))
        self._pos = np.zeros((B, N))
        self._avg = np.zeros((B, N))
        self._w = np.zeros((B, N))
        self._fills = np.zeros((B, N, N_FILL))
        self._obs = np.zeros((B, data.obs_size), dtype=np.float32)
        self._term_obs = np.zeros((B, data.obs_size), dtype=np.float32)
        self._rew = np.zeros(B)
        self._flags = np.zeros(B, dtype=np.int8)
        self._rec = np.zeros((B, 0, N, 9))
        self._recs = np.zeros((B, 0, N_RECS))
        self._ep_return = np.zeros(B)
        self._ep_length = np.zeros(B, dtype=np.int64)
        self._length, self._cash0 = self.layout.length, config.initial_cash
        self._rngs = [seeding.np_random(None)[0] for _ in range(B)]
        self._env_range = range(B)
        self._t0 = time.perf_counter()
        # The kernel's arguments never change identity (the pool is refilled in place): build them once.
        pool = self._pool
        self._step_args = (self._mk, self._feats, self._scale, self._p, self._cv, self._act, pool.noise_rows,
                           pool.starts, self._length, self._cash0, self._ist, self._fst, self._pos,
                           self._avg, self._w, self._fills, self._obs, self._term_obs, self._rew, self._flags,
                           self._ep_return, self._ep_length, self._rec, self._recs)
        super().__init__(B, observation_space(data), action_space(data, config))

    def reset(self) -> VecEnvObs:
        """Start every env's next episode; seeds from :meth:`seed` (env i: ``seed + i``) are used once and
        drop the episodes that env had drawn ahead."""
        for i, seed in enumerate(self._seeds):
            if seed is not None:
                self._rngs[i] = seeding.np_random(seed)[0]
                self._ist[i, I_PEND] = 0
        start_episodes(self.data, self.config, self._cv, self._pool, self._rngs,
                       np.arange(self.num_envs, dtype=np.int64), self._ist, self._fst, self._pos, self._avg, self._obs)
        self._pool.refill(self._rngs, self._ist)  # the kernel needs a next episode for every env
        self._reset_seeds()
        self._reset_options()
        return self._obs.copy()

    def step_async(self, actions: np.ndarray) -> None:
        if np.shape(actions) != self._act.shape:
            raise ValueError(f"actions have shape {np.shape(actions)}, expected (n_envs, n_symbols) "
                             f"{self._act.shape}")
        self._act[...] = actions

    def step_wait(self) -> VecEnvStepReturn:
        n_done = env_step(*self._step_args)
        infos: list[dict[str, Any]] = [{} for _ in self._env_range]  # fresh dicts: callers may add keys
        dones = self._flags > 0
        if n_done:
            now = round(time.perf_counter() - self._t0, 6)
            ended = np.flatnonzero(dones)
            terminal = self._term_obs[ended]  # a copy: the kernel reuses its buffer
            truncated = (self._flags[ended] == TRUNCATED).tolist()
            returns, lengths = self._ep_return[ended].tolist(), self._ep_length[ended].tolist()
            for j, i in enumerate(ended.tolist()):
                infos[i] = {
                    "terminal_observation": terminal[j],
                    "TimeLimit.truncated": truncated[j],
                    "episode": {"r": round(returns[j], 6), "l": lengths[j], "t": now},
                }
            if not self._ist[ended, I_PEND].all():  # only envs that started an episode used up a drawn one
                self._pool.refill(self._rngs, self._ist)
        return self._obs.copy(), self._rew.astype(np.float32), dones, infos

    @property
    def equity(self) -> np.ndarray:
        """Current equity of every env (currency), shape (n_envs,)."""
        return self._fst[:, F_EQUITY].copy()

    def close(self) -> None:
        """Nothing to release: the env holds only arrays."""

    def _indices(self, indices: VecEnvIndices) -> Sequence[int]:
        return list(self._get_indices(indices))

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        """The attribute of this (single, shared) object, once per requested env index."""
        return [getattr(self, attr_name) for _ in self._indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        """Set an attribute shared by all envs (they are one object)."""
        setattr(self, attr_name, value)

    def env_method(self, method_name: str, *method_args: Any, indices: VecEnvIndices = None,
                   **method_kwargs: Any) -> list[Any]:
        """Call a method of this object once per requested env index."""
        method = getattr(self, method_name)
        return [method(*method_args, **method_kwargs) for _ in self._indices(indices)]

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        """No gymnasium wrappers: episode statistics are reported directly (see the module docstring)."""
        return [False for _ in self._indices(indices)]
