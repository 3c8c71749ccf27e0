"""The portfolio environment (gymnasium): one episode at a time, for evaluation, validation and checks
(training steps many at once in :class:`~ai_trading.rl_trading.batched.BatchedPortfolioEnv`).

Each step: the action (target weight per symbol) is constrained, executed on the next bar through the
simulator's compiled fill kernel (spread, impact, latency, fees, partial fills above the participation
cap), and rewarded by the net-of-cost equity change minus the configured risk penalties. The step itself
is :func:`ai_trading.rl_trading.kernels.env_step` with B = 1, shared with the batched VecEnv.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from ai_trading.execution.kernels import N_FILL
from ai_trading.rl_trading.config import PortfolioEnvConfig
from ai_trading.rl_trading.data import EnvData, EpisodeLayout
from ai_trading.rl_trading.episodes import EpisodePool, EpisodeRecord
from ai_trading.rl_trading.kernels import (
    F_EQUITY,
    I_K,
    I_RUIN,
    I_SLOT,
    N_FST,
    N_IST,
    N_RECS,
    R_FEE,
    R_IMPACT,
    R_NOTIONAL,
    R_POSITION,
    R_QTY,
    R_SPREAD,
    R_WEIGHT,
    RS_CASH,
    RS_EQUITY,
    RS_FINANCING,
    RS_REWARD,
    TERMINATED,
    config_vector,
    env_step,
    reset_envs,
)

log = logging.getLogger(__name__)

Split = Literal["train", "validation", "eval"]


def observation_space(data: EnvData) -> spaces.Box:
    """Unbounded float32 vector of the features plus the portfolio state (VecNormalize scales it)."""
    return spaces.Box(-np.inf, np.inf, shape=(data.obs_size,), dtype=np.float32)


def action_space(data: EnvData, config: PortfolioEnvConfig) -> spaces.Box:
    """Target weight per symbol before constraints: [0, 1] long-only, [-1, 1] long-short."""
    low = 0.0 if config.long_only else -1.0
    return spaces.Box(low, 1.0, shape=(data.n_symbols,), dtype=np.float32)


def start_episodes(data: EnvData, config: PortfolioEnvConfig, cv: np.ndarray, pool: EpisodePool,
                   rngs: list[np.random.Generator], envs: np.ndarray, ist: np.ndarray, fst: np.ndarray,
                   pos: np.ndarray, avg: np.ndarray, obs: np.ndarray) -> None:
    """Start the next episode of each env in ``envs``: top up ``pool`` (env b draws from ``rngs[b]``), then
    move those envs to their next pooled episode; flat book, first observation written. ``cv`` is the
    env's :func:`~ai_trading.rl_trading.kernels.config_vector`."""
    pool.refill(rngs, ist)
    reset_envs(data.packed, data.features, cv, envs, pool.starts, pool.layout.length,
               config.initial_cash, ist, fst, pos, avg, obs)


class PortfolioEnv(gym.Env[np.ndarray, np.ndarray]):
    """Multi-symbol portfolio env over :class:`EnvData`; ``split`` picks random training windows or the one
    deterministic validation or held-out evaluation episode. See the module docstring of
    :mod:`ai_trading.rl_trading.kernels` for the observation layout.

    Ruin (equity at or below ``ruin_threshold`` times the start): a training episode terminates; a
    validation or evaluation episode is not shortened: from the next decision on every target is forced
    to 0 (the book is flattened and stays flat) and it runs to its window's end, so it is scored on the
    whole window; :attr:`EpisodeRecord.ruin_step` reports the ruin."""

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012 - gymnasium's class attribute

    def __init__(self, data: EnvData, config: PortfolioEnvConfig, *, split: Split = "train") -> None:
        self.data = data
        self.config = config
        self.split = split
        self.layout = EpisodeLayout.of(data, config, split)
        self.observation_space = observation_space(data)
        self.action_space = action_space(data, config)
        N, L = data.n_symbols, self.layout.length
        self._cv = config_vector(config, split)
        self._mk, self._feats = data.packed, data.features
        self._scale, self._p = data.params.impact_scale, data.params.values
        self._env0 = np.zeros(1, dtype=np.int64)
        self._act = np.zeros((1, N))
        # Two slots: the running episode and the next, drawn at reset (never ahead: reset(seed) re-seeds).
        self._pool = EpisodePool(1, 2, self.layout, N, keep_states=True)
        self._ist = np.zeros((1, N_IST), dtype=np.int64)
        self._fst = np.zeros((1, N_FST))
        self._pos = np.zeros((1, N))
        self._avg = np.zeros((1, N))
        self._w = np.zeros((1, N))
        self._fills = np.zeros((1, N, N_FILL))
        self._obs = np.zeros((1, data.obs_size), dtype=np.float32)
        self._rew = np.zeros(1)
        self._flags = np.zeros(1, dtype=np.int8)
        self._ep_ret = np.zeros(1)
        self._ep_len = np.zeros(1, dtype=np.int64)
        self._rec = np.zeros((1, L, N, 9))
        self._recs = np.zeros((1, L, N_RECS))
        self._start = 0
        self._exec_state: dict[str, Any] = {}
        self._reset_seed: int | None = None
        self._last_record: EpisodeRecord | None = None
        self._ready = False

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode; ``seed`` re-seeds the env's generator (same seed -> same episodes)."""
        super().reset(seed=seed)
        if self._ist[0, I_K] > 0:
            self._last_record = self._record()
        self._reset_seed = seed
        start_episodes(self.data, self.config, self._cv, self._pool, [self.np_random], self._env0, self._ist,
                       self._fst, self._pos, self._avg, self._obs)
        slot = self._ist[0, I_SLOT]
        self._start = int(self._pool.starts[0, slot])
        state = self._pool.states[0][slot]
        assert state is not None
        self._exec_state = state
        self._ready = True
        return self._obs[0].copy(), {"start": self.data.market.timestamps[self._start]}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Trade towards the constrained target weights on the next bar; reward net of costs and penalties."""
        if not self._ready:
            raise gym.error.ResetNeeded("call reset() before step()")
        self._act[0] = action
        pool = self._pool
        env_step(self._mk, self._feats, self._scale, self._p, self._cv, self._act, pool.noise_rows, pool.starts,
                 self.layout.length, self.config.initial_cash, self._ist, self._fst, self._pos,
                 self._avg, self._w, self._fills, self._obs, self._obs, self._rew, self._flags, self._ep_ret,
                 self._ep_len, self._rec, self._recs)
        flag = self._flags[0]
        if flag:
            self._ready = False
        return self._obs[0].copy(), float(self._rew[0]), bool(flag == TERMINATED), bool(flag > TERMINATED), {}

    @property
    def equity(self) -> float:
        """Current equity (cash + positions marked at the current bar's close), currency."""
        return float(self._fst[0, F_EQUITY])

    def episode_record(self) -> EpisodeRecord:
        """The episode in progress if it has taken a step, else the last finished one (a VecEnv resets
        automatically at the end of an episode, so this still returns the episode that just ended)."""
        if self._ist[0, I_K] > 0:
            return self._record()
        if self._last_record is None:
            raise gym.error.ResetNeeded("no episode has taken a step yet")
        return self._last_record

    def _record(self) -> EpisodeRecord:
        k, ruin = int(self._ist[0, I_K]), int(self._ist[0, I_RUIN])
        rec, recs = self._rec[0, :k], self._recs[0, :k]
        stamps = self.data.market.timestamps
        return EpisodeRecord(
            timestamps=stamps[self._start : self._start + k],
            exec_timestamps=stamps[self._start + 1 : self._start + k + 1],
            symbols=self.data.market.symbols, weights=rec[..., R_WEIGHT].copy(), equity=recs[:, RS_EQUITY].copy(),
            cash=recs[:, RS_CASH].copy(), positions=rec[..., R_POSITION].copy(), qty=rec[..., R_QTY].copy(),
            spread=rec[..., R_SPREAD].copy(), impact=rec[..., R_IMPACT].copy(), fee=rec[..., R_FEE].copy(),
            notional=rec[..., R_NOTIONAL].copy(), financing=recs[:, RS_FINANCING].copy(),
            rewards=recs[:, RS_REWARD].copy(),
            initial_cash=self.config.initial_cash, start=self._start, exec_state=self._exec_state,
            reset_seed=self._reset_seed, ruin_step=ruin if ruin >= 0 else None)
