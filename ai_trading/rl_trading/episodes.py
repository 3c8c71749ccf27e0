"""Episodes: the pool each env draws its episodes into ahead of time (start row and execution noise), and
the record of one finished episode (enough to evaluate and to replay it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from ai_trading.execution.market import NOISE_FIELDS, draw_noise
from ai_trading.rl_trading.data import EpisodeLayout
from ai_trading.rl_trading.kernels import I_PEND, I_SLOT

FloatArray = npt.NDArray[np.float64]


class EpisodePool:
    """Episodes drawn ahead for B envs: a ring of ``slots`` per env holding the running episode and up to
    ``slots - 1`` drawn next (start row, execution noise (length, N, 2) and with ``keep_states`` the
    execution generator state).

    Env b draws each episode from its generator ``rngs[b]``: the start row, then the episode's noise
    (:func:`ai_trading.execution.market.draw_noise`, in the layout of
    :func:`ai_trading.execution.vectorized.run_targets`), straight into its slot. Episodes are drawn in each
    env's order, so drawing ahead changes nothing; it lets :func:`env_step` start an env's next episode
    itself. ``ist[:, I_SLOT]``/``ist[:, I_PEND]`` say where each env is in its ring. ``states`` holds each
    episode's generator state just before its noise, so ``run_targets`` with a generator at that state
    reproduces its fills.
    """

    def __init__(self, n_envs: int, slots: int, layout: EpisodeLayout, n_symbols: int,
                 keep_states: bool = False) -> None:
        if slots < 2:
            raise ValueError(f"an episode pool needs at least 2 slots, got {slots}")
        B, K, L, N = n_envs, slots, layout.length, n_symbols
        self.layout, self.slots = layout, slots
        self.noise = np.zeros((B, K, L, N, NOISE_FIELDS))
        self.starts = np.zeros((B, K), dtype=np.int64)
        self.keep_states = keep_states
        self.states: list[list[dict[str, Any] | None]] = [[None] * K for _ in range(B)]
        # Row (b * K + slot) * L + k of this is step k of the episode in env b's slot.
        self.noise_rows = self.noise.reshape(B * K * L, N, NOISE_FIELDS)

    def refill(self, rngs: list[np.random.Generator], ist: np.ndarray) -> None:
        """Draw episodes until every env has ``slots - 1`` ahead (env b from ``rngs[b]``)."""
        K, lo, hi = self.slots, self.layout.lo, self.layout.hi + 1
        episode_slots = self.noise.shape[2:4]  # (length, N) fill slots per episode
        pend, cur = ist[:, I_PEND], ist[:, I_SLOT]
        for b in np.flatnonzero(pend < K - 1).tolist():
            rng = rngs[b]
            for ahead in range(int(pend[b]), K - 1):
                slot = (int(cur[b]) + 1 + ahead) % K
                self.starts[b, slot] = rng.integers(lo, hi)
                if self.keep_states:
                    self.states[b][slot] = dict(rng.bit_generator.state)
                draw_noise(rng, episode_slots, out=self.noise[b, slot])
            ist[b, I_PEND] = K - 1


@dataclass(frozen=True)
class EpisodeRecord:
    """One episode of :class:`PortfolioEnv`, enough to evaluate and to replay it.

    Row k is step k: ``weights`` the applied (constrained) targets decided at ``timestamps[k]``'s close,
    executed on the next bar; ``equity``/``cash``/``positions`` the state after that bar's fills, marked
    at its close; ``spread``/``impact``/``fee`` (currency) and ``notional`` (traded, currency) per symbol;
    ``financing`` the interest credited (negative: paid) before that bar's fills on the book held since the
    decision close.
    Replay: ``run_targets(slice_market(market, start, start + n_steps + 1), params, targets,
    record.exec_rng(), initial_cash=initial_cash)`` with ``targets[:n_steps] = weights``; ``exec_state`` is
    the env generator's ``bit_generator.state`` just before the episode's execution noise.

    ``ruin_step`` is the first step whose equity fell to ``ruin_threshold`` times the start (None: no
    ruin). A training episode ends there; a validation or evaluation episode runs on to its window's end
    with every later target 0 (recorded as such, so the replay holds), i.e. flat after the ruin.
    """

    timestamps: pd.DatetimeIndex
    exec_timestamps: pd.DatetimeIndex
    symbols: tuple[str, ...]
    weights: FloatArray
    equity: FloatArray
    cash: FloatArray
    positions: FloatArray
    qty: FloatArray
    spread: FloatArray
    impact: FloatArray
    fee: FloatArray
    notional: FloatArray
    financing: FloatArray
    rewards: FloatArray
    initial_cash: float
    start: int
    exec_state: dict[str, Any]
    reset_seed: int | None
    ruin_step: int | None

    @property
    def n_steps(self) -> int:
        return len(self.equity)

    @property
    def ruin_timestamp(self) -> pd.Timestamp | None:
        """The bar whose close marked the ruin (None: no ruin)."""
        return None if self.ruin_step is None else self.exec_timestamps[self.ruin_step]

    def exec_rng(self) -> np.random.Generator:
        """A fresh generator at the episode's execution state (each call starts from the same draws)."""
        bit_generator = getattr(np.random, self.exec_state["bit_generator"])()
        bit_generator.state = self.exec_state
        return np.random.Generator(bit_generator)
