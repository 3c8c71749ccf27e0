"""The compiled step both portfolio envs share (constraints -> fills -> financing -> reward -> observation)
over B envs, and the layouts of its state arrays.

:class:`~ai_trading.rl_trading.env.PortfolioEnv` runs it with B = 1,
:class:`~ai_trading.rl_trading.batched.BatchedPortfolioEnv` with B = n_envs; both draw each episode's
randomness the same way (through an :class:`~ai_trading.rl_trading.episodes.EpisodePool`), so they agree bit
for bit.

Observation at decision row t (float32): the feature rows of every symbol at t (symbol-major, the
feature spec's column order), then ``cash / equity``, the N position weights ``positions * mark / equity``,
leverage (gross exposure as a fraction of ``max_leverage``), gross exposure ``sum |w|``, net exposure
``sum w``, unrealised PnL (``sum positions * (mark - average fill price)`` / equity) and drawdown
(``1 - equity / running peak``).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from numba import njit

from ai_trading.execution.kernels import FILL_NOTIONAL, FILL_PRICE, FILL_QTY, N_FILL, financing, step_batch
from ai_trading.execution.market import P_BORROW_FEE, P_CASH_RATE, P_DEBIT_RATE
from ai_trading.rl_trading.config import PortfolioEnvConfig
from ai_trading.rl_trading.data import (
    MK_CLOSE,
    MK_HIGH,
    MK_HS,
    MK_LOW,
    MK_MARK,
    MK_OPEN,
    MK_TRADABLE,
    MK_VOL,
    MK_VOLUME,
    MK_YEAR_FRAC,
)

FloatArray = npt.NDArray[np.float64]
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
TERMINATED, TRUNCATED = 1, 2


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
            q = fills[b, n, FILL_QTY]
            if q != 0.0:
                turnover += fills[b, n, FILL_NOTIONAL]
                old = pos[b, n] - q
                price = fills[b, n, FILL_PRICE]
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
                for j in range(N_FILL):  # R_QTY .. R_NOTIONAL hold the fill row's columns in order
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
