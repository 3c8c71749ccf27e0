"""What both portfolio envs share: the aligned market/feature arrays, the episode layout, and the compiled
step (constraints -> fills -> reward -> observation) over B envs.

:class:`PortfolioEnv` runs it with B = 1, :class:`BatchedPortfolioEnv` with B = n_envs; both draw each
episode's randomness the same way (through an :class:`EpisodePool`), so they agree bit for bit.

Observation at decision row t (float32): the feature rows of every symbol at t (symbol-major, the
feature spec's column order), then ``cash / equity``, the N position weights ``positions * mark / equity``,
leverage (gross exposure as a fraction of ``max_leverage``), gross exposure ``sum |w|``, net exposure
``sum w``, unrealised PnL (``sum positions * (mark - average fill price)`` / equity) and drawdown
(``1 - equity / running peak``).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from numba import njit

from ai_trading.errors import ConfigError, DataValidationError
from ai_trading.execution.kernels import financing, step_batch
from ai_trading.execution.market import (
    NOISE_FIELDS,
    P_BORROW_FEE,
    P_CASH_RATE,
    P_DEBIT_RATE,
    ExecParams,
    MarketArrays,
    draw_noise,
    slice_market,
)
from ai_trading.features import FeatureSet
from ai_trading.rl_trading.config import PortfolioEnvConfig

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]

# Rows of the packed market array ``mk`` (10, T, N); the year fraction of a row is the same in every column.
MK_OPEN, MK_HIGH, MK_LOW, MK_CLOSE, MK_VOLUME, MK_MARK, MK_TRADABLE, MK_HS, MK_VOL, MK_YEAR_FRAC = range(10)
# Env config vector ``cv``; ``CV_RUN_TO_END`` > 0: a ruined episode runs on flat instead of terminating.
(CV_LONG_ONLY, CV_MAX_POS, CV_MAX_LEV, CV_SIMPLE, CV_DD, CV_VAR, CV_LEV, CV_TURN, CV_RUIN,
 CV_RUN_TO_END) = range(10)
# Per-env integer state ``ist`` (B, 6): decision row, end row, step in episode, pool slot of the running
# episode, episodes drawn ahead, step of the first ruin (-1: none yet); float state ``fst`` (B, 5): cash,
# equity, running peak, start equity, return.
I_T, I_END, I_K, I_SLOT, I_PEND, I_RUIN = range(6)
F_CASH, F_EQUITY, F_PEAK, F_EQ0, F_RET = range(5)
N_IST, N_FST = 6, 5
# Per-step per-symbol record fields ``rec`` (B, R, N, 9) and per-step scalars ``recs`` (B, R, N_RECS).
R_WEIGHT, R_QTY, R_PRICE, R_REF, R_SPREAD, R_IMPACT, R_FEE, R_NOTIONAL, R_POSITION = range(9)
RS_CASH, RS_EQUITY, RS_REWARD, RS_FINANCING = range(4)
N_RECS = 4
N_PORTFOLIO_BASE = 6  # cash fraction, leverage, gross, net, unrealised PnL, drawdown (+ N weights)
TERMINATED, TRUNCATED = 1, 2


@dataclass(frozen=True)
class EnvData:
    """Market and features on the env's timeline: rows where every symbol has features (after its warm-up)
    up to the last row where every symbol still has bars.

    Inside the timeline a symbol without a bar at some row (a holiday on its exchange) keeps its last
    feature row (forward-filled: only older bars, so still causal) and cannot trade there (the simulator
    skips untradable bars). Rows ``[0, n_train)`` are the training split; the evaluation episode decides
    at ``n_train - 1`` and executes on the held-out rows ``n_train .. T-1`` only.
    """

    market: MarketArrays
    params: ExecParams
    features: npt.NDArray[np.float32]
    feature_names: tuple[str, ...]
    n_train: int
    packed: FloatArray

    @classmethod
    def build(cls, market: MarketArrays, params: ExecParams, features: FeatureSet,
              eval_fraction: float) -> EnvData:
        """Align ``features`` to ``market`` (full history) and cut the common timeline."""
        T, N = market.shape
        F = len(features.feature_names)
        wide = np.full((T, N, F), np.nan, dtype=np.float32)
        frame = features.frame
        symbols = frame.index.get_level_values("symbol")
        for n, symbol in enumerate(market.symbols):
            sub = frame[symbols == symbol].droplevel("symbol")
            if sub.empty:
                raise DataValidationError("no_features", "symbol has no feature rows", symbol=symbol)
            aligned = sub.reindex(market.timestamps).ffill()
            wide[:, n, :] = aligned.to_numpy(np.float32)
        have = np.isfinite(wide).all(axis=(1, 2))
        first = int(np.argmax(have)) if have.any() else T
        last_bar = [int(np.flatnonzero(market.tradable[:, n])[-1]) for n in range(N)]
        stop = min(last_bar) + 1
        if stop - first < 3:
            raise DataValidationError("too_short", f"common feature timeline has {max(stop - first, 0)} rows; "
                                      "the env needs at least 3", source="rl_env")
        timeline = slice_market(market, first, stop)
        n_rows = stop - first
        n_train = round(n_rows * (1.0 - eval_fraction))
        if n_train < 2 or n_rows - n_train < 1:
            raise DataValidationError("too_short", f"timeline of {n_rows} rows leaves no train or eval split at "
                                      f"eval_fraction={eval_fraction}", source="rl_env")
        packed = np.ascontiguousarray(np.stack([
            timeline.open, timeline.high, timeline.low, timeline.close, timeline.volume, timeline.mark,
            timeline.tradable.astype(np.float64), timeline.half_spread, timeline.vol,
            np.broadcast_to(timeline.year_frac[:, None], (n_rows, N))]))
        feats = np.ascontiguousarray(wide[first:stop].reshape(n_rows, N * F))
        log.info("env timeline rows=%d first=%s last=%s n_train=%d symbols=%s", n_rows,
                 timeline.timestamps[0], timeline.timestamps[-1], n_train, ",".join(market.symbols))
        return cls(market=timeline, params=params, features=feats,
                   feature_names=tuple(f"{s}:{c}" for s in market.symbols for c in features.feature_names),
                   n_train=n_train, packed=packed)

    @property
    def n_symbols(self) -> int:
        return len(self.market.symbols)

    @property
    def obs_size(self) -> int:
        return self.features.shape[1] + N_PORTFOLIO_BASE + self.n_symbols


@dataclass(frozen=True)
class EpisodeLayout:
    """Where episodes may lie: decision rows ``lo .. hi`` for the start, ``length`` steps each."""

    lo: int
    hi: int
    length: int

    @classmethod
    def of(cls, data: EnvData, config: PortfolioEnvConfig, split: str) -> EpisodeLayout:
        """``train``: random windows executing on rows ``< fit_end``; ``validation``: one episode over
        ``fit_end .. n_train - 1``; ``eval``: one episode over the held-out ``n_train .. T - 1``."""
        fit_end = data.n_train - round(config.validation_fraction * data.n_train)
        if fit_end < 2:
            raise ConfigError(f"env.validation_fraction={config.validation_fraction} leaves no training rows")
        if split == "eval":
            start = data.n_train - 1
            return cls(start, start, data.market.shape[0] - 1 - start)
        if split == "validation":
            if fit_end == data.n_train:
                raise ConfigError("split=validation needs env.validation_fraction > 0")
            start = fit_end - 1
            return cls(start, start, data.n_train - 1 - start)
        if split != "train":
            raise ValueError(f"split must be 'train', 'validation' or 'eval', got {split!r}")
        longest = fit_end - 1
        length = longest if config.episode_length is None else min(config.episode_length, longest)
        if config.episode_length is not None and config.episode_length > longest:
            log.warning("episode_length=%d exceeds the training split (%d steps); using %d",
                        config.episode_length, longest, longest)
        return cls(0, longest - length, length)


def runs_to_end(split: str) -> bool:
    """Whether episodes of ``split`` run to their window's end after a ruin (flat from the next decision
    on) rather than terminate: validation and the held-out evaluation score the whole window, while a
    training episode ends at its ruin (the terminal state is the learning signal)."""
    if split not in ("train", "validation", "eval"):
        raise ValueError(f"split must be 'train', 'validation' or 'eval', got {split!r}")
    return split != "train"


def config_vector(config: PortfolioEnvConfig, split: str) -> FloatArray:
    """The env config of ``split``'s episodes as the kernel's flat float vector (layout ``CV_*``)."""
    r = config.reward
    return np.array([float(config.long_only), config.max_position, config.max_leverage,
                     float(r.kind == "simple"), r.drawdown_penalty, r.variance_penalty, r.leverage_penalty,
                     r.turnover_penalty, config.ruin_threshold, float(runs_to_end(split))], dtype=np.float64)


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


@njit(cache=True)
def begin_episode(starts: np.ndarray, length: int, cash0: float, ist: np.ndarray, fst: np.ndarray, pos: np.ndarray,
                  avg: np.ndarray, b: int) -> None:
    """Env ``b`` moves to the next episode of its pool: flat book at its start row (no observation)."""
    slot = (ist[b, I_SLOT] + 1) % starts.shape[1]
    ist[b, I_SLOT] = slot
    ist[b, I_PEND] -= 1
    start = starts[b, slot]
    ist[b, I_T] = start
    ist[b, I_END] = start + length
    ist[b, I_K] = 0
    ist[b, I_RUIN] = -1
    fst[b, F_CASH] = cash0
    fst[b, F_EQUITY] = cash0
    fst[b, F_PEAK] = cash0
    fst[b, F_EQ0] = cash0
    fst[b, F_RET] = 0.0
    for n in range(pos.shape[1]):
        pos[b, n] = 0.0
        avg[b, n] = 0.0


@njit(cache=True)
def reset_envs(mk: np.ndarray, feats: np.ndarray, cv: np.ndarray, envs: np.ndarray, starts: np.ndarray,
               length: int, cash0: float, ist: np.ndarray, fst: np.ndarray, pos: np.ndarray, avg: np.ndarray,
               obs: np.ndarray) -> None:
    """Start the next pooled episode of each env in ``envs`` (:func:`begin_episode`) and write its first
    observation."""
    for j in range(envs.shape[0]):
        begin_episode(starts, length, cash0, ist, fst, pos, avg, envs[j])
        write_obs(mk, feats, cv, ist, fst, pos, avg, obs, envs[j], envs[j] + 1)


@njit(cache=True)
def write_obs(mk: np.ndarray, feats: np.ndarray, cv: np.ndarray, ist: np.ndarray, fst: np.ndarray,
              pos: np.ndarray, avg: np.ndarray, obs: np.ndarray, first: int, stop: int) -> None:
    """Observations of envs ``first .. stop - 1`` at their current decision rows (layout in the module
    docstring)."""
    nf = feats.shape[1]
    N = pos.shape[1]
    k = nf + 1 + N
    for b in range(first, stop):
        t = ist[b, I_T]
        for j in range(nf):
            obs[b, j] = feats[t, j]
        eq = fst[b, F_EQUITY]
        den = eq if eq > 1e-12 * fst[b, F_EQ0] else 1e-12 * fst[b, F_EQ0]
        gross = 0.0
        net = 0.0
        upnl = 0.0
        for n in range(N):
            m = mk[MK_MARK, t, n]
            w = pos[b, n] * m / den
            obs[b, nf + 1 + n] = w
            gross += abs(w)
            net += w
            if pos[b, n] != 0.0:
                upnl += pos[b, n] * (m - avg[b, n])
        obs[b, nf] = fst[b, F_CASH] / den
        obs[b, k] = gross / cv[CV_MAX_LEV]
        obs[b, k + 1] = gross
        obs[b, k + 2] = net
        obs[b, k + 3] = upnl / den
        obs[b, k + 4] = 1.0 - eq / fst[b, F_PEAK]


@njit(cache=True)
def env_step(mk: np.ndarray, feats: np.ndarray, scale: np.ndarray, p: np.ndarray, cv: np.ndarray,
             act: np.ndarray, noise: np.ndarray, starts: np.ndarray, length: int, cash0: float,
             ist: np.ndarray, fst: np.ndarray, pos: np.ndarray, avg: np.ndarray, w: np.ndarray,
             fills: np.ndarray, obs: np.ndarray, term_obs: np.ndarray, rew: np.ndarray, flags: np.ndarray,
             ep_ret: np.ndarray, ep_len: np.ndarray, rec: np.ndarray, recs: np.ndarray) -> int:
    """Step B envs once: constrain actions to weights ``w``, fill all envs through
    :func:`ai_trading.execution.kernels.step_batch`, reward, end-of-episode flags, next observations.

    Constraints, whatever the action: non-finite -> 0; clipped to [0, 1] (long-only) or [-1, 1]; times
    ``max_position``; scaled down so ``sum |w| <= max_leverage``; all 0 once the episode is ruined (only a
    ``CV_RUN_TO_END`` episode steps on after its ruin: it stays flat to its window's end). Step k of the
    episode in env b's pool slot s uses row ``(b * K + s) * length + k`` of the pooled ``noise``
    (:class:`EpisodePool` rows). Records step k into ``rec``/``recs`` when they have room. An env whose
    episode ends gets its return and length in ``ep_ret``/``ep_len``; if its pool holds a next episode it
    starts it at once (the final observation goes to ``term_obs``, the new first one to ``obs``), else
    ``obs`` keeps the final one.
    Returns the number of episodes that ended. Each phase loops over all envs inside one call (a call
    per env would cost a reference-count round trip per array argument).
    """
    B, N = pos.shape
    K = starts.shape[1]
    lo = 0.0 if cv[CV_LONG_ONLY] > 0.0 else -1.0
    mark = mk[MK_MARK]
    d = np.empty(B, dtype=np.int64)
    rows = np.empty(B, dtype=np.int64)
    cash = np.empty(B)
    equity = np.empty(B)
    for b in range(B):
        gross = 0.0
        for n in range(N):
            a = act[b, n]
            if not math.isfinite(a):
                a = 0.0
            a = min(max(a, lo), 1.0)
            w[b, n] = a * cv[CV_MAX_POS]
            gross += abs(w[b, n])
        if gross > cv[CV_MAX_LEV]:
            shrink = cv[CV_MAX_LEV] / gross
            for n in range(N):
                w[b, n] = w[b, n] * shrink
        if ist[b, I_RUIN] >= 0:
            for n in range(N):
                w[b, n] = 0.0
        d[b] = ist[b, I_T]
        rows[b] = (b * K + ist[b, I_SLOT]) * length + ist[b, I_K]
        cash[b] = fst[b, F_CASH]
    step_batch(mk[MK_OPEN], mk[MK_HIGH], mk[MK_LOW], mk[MK_CLOSE], mk[MK_VOLUME], mark, mk[MK_TRADABLE],
               mk[MK_HS], mk[MK_VOL], mk[MK_YEAR_FRAC, :, 0], scale, p, d, w, True, noise, rows, pos, cash, equity,
               fills)
    n_done = 0
    for b in range(B):
        k = ist[b, I_K]
        e = d[b] + 1
        eq_before = fst[b, F_EQUITY]
        eq0 = fst[b, F_EQ0]
        eq = equity[b]
        turnover = 0.0
        gross_after = 0.0
        for n in range(N):
            q = fills[b, n, 0]
            if q != 0.0:
                turnover += fills[b, n, 6]
                old = pos[b, n] - q
                price = fills[b, n, 1]
                if pos[b, n] == 0.0:
                    avg[b, n] = 0.0
                elif old == 0.0 or (old > 0.0) == (q > 0.0):
                    avg[b, n] = (avg[b, n] * abs(old) + price * abs(q)) / abs(pos[b, n])
                elif (old > 0.0) != (pos[b, n] > 0.0):
                    avg[b, n] = price  # flipped through zero: the new side's cost is this fill
            gross_after += abs(pos[b, n] * mark[e, n])
        peak = max(fst[b, F_PEAK], eq)
        floor = 1e-12 * eq0
        r = (eq - eq_before) / eq0 if cv[CV_SIMPLE] > 0.0 else math.log(max(eq, floor) / eq_before)
        ret = eq / eq_before - 1.0
        r -= cv[CV_DD] * (1.0 - eq / peak)
        r -= cv[CV_VAR] * ret * ret
        r -= cv[CV_LEV] * max(gross_after / max(eq, floor) - cv[CV_MAX_LEV], 0.0)
        r -= cv[CV_TURN] * turnover / eq_before
        rew[b] = r
        fst[b, F_CASH] = cash[b]
        fst[b, F_EQUITY] = eq
        fst[b, F_PEAK] = peak
        fst[b, F_RET] += r
        ist[b, I_T] = e
        ist[b, I_K] = k + 1
        ruined = eq <= cv[CV_RUIN] * eq0
        if ruined and ist[b, I_RUIN] < 0:
            ist[b, I_RUIN] = k
        if ruined and cv[CV_RUN_TO_END] == 0.0:
            flags[b] = TERMINATED
        elif e >= ist[b, I_END]:
            flags[b] = TRUNCATED
        else:
            flags[b] = 0
        if k < rec.shape[1]:
            for n in range(N):
                rec[b, k, n, R_WEIGHT] = w[b, n]
                for j in range(7):
                    rec[b, k, n, R_QTY + j] = fills[b, n, j]
                rec[b, k, n, R_POSITION] = pos[b, n]
            recs[b, k, RS_CASH] = cash[b]
            recs[b, k, RS_EQUITY] = eq
            recs[b, k, RS_REWARD] = r
            # The interest step_batch credited, from the same inputs: the book recorded at the last step
            # (flat, all cash, at the episode's start).
            held_cash = recs[b, k - 1, RS_CASH] if k > 0 else cash0
            short = 0.0
            for n in range(N):
                held = rec[b, k - 1, n, R_POSITION] if k > 0 else 0.0
                if held < 0.0:
                    short = short - held * mark[d[b], n]
            recs[b, k, RS_FINANCING] = financing(held_cash, short, mk[MK_YEAR_FRAC, e, 0], p[P_CASH_RATE],
                                                 p[P_DEBIT_RATE], p[P_BORROW_FEE])
        if flags[b] != 0:
            n_done += 1
            ep_ret[b] = fst[b, F_RET]
            ep_len[b] = k + 1
            if ist[b, I_PEND] > 0:
                write_obs(mk, feats, cv, ist, fst, pos, avg, term_obs, b, b + 1)
                begin_episode(starts, length, cash0, ist, fst, pos, avg, b)
    write_obs(mk, feats, cv, ist, fst, pos, avg, obs, 0, B)
    return n_done


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
