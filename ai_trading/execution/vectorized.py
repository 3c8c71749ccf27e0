"""Vectorised execution of target positions: one batched step (RL envs) and whole sequences (backtests).

Timing: targets decided at bar ``t``'s close (valued at ``mark[t]``) execute on bar ``t+1``. Each bar's
trade towards the target is a child market order that reaches the venue after a random latency and
fills at the price on bar ``t+1``'s open -> low/high -> close path at that moment (see
:func:`ai_trading.execution.kernels.path_price`), plus half-spread and impact, at most
``participation_cap * volume`` shares. An unfilled remainder is not lost: the next bar's target again
asks for it. Equity is marked at bar ``t+1``'s close: ``equity == cash + sum(positions * mark)``.
Before bar ``t+1``'s fills, cash is credited the financing of the book held since bar ``t``'s close over
the calendar time between the bars (:func:`ai_trading.execution.kernels.financing`: interest on cash,
margin interest on a debit, the borrow fee on shorts).

Both functions draw one noise slot per env, symbol and bar from the given Generator
(:func:`ai_trading.execution.market.draw_noise`), in the same order, so ``run_targets`` equals repeated
``step`` calls with the same seed, to the bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ai_trading.errors import ConfigError
from ai_trading.execution.kernels import (
    FILL_FEE,
    FILL_IMPACT,
    FILL_NOTIONAL,
    FILL_PRICE,
    FILL_QTY,
    FILL_REF,
    FILL_SPREAD,
    N_FILL,
    run_sequence,
    step_batch,
)
from ai_trading.execution.market import ExecParams, MarketArrays, draw_noise

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class StepResult:
    """One bar for B envs. Arrays are B x N (fills) or B; ``qty`` is signed filled shares.

    ``price`` is the fill price and ``ref`` the reference (mid after latency), NaN where nothing filled;
    ``spread``, ``impact``, ``fee`` are currency; ``cash = cash_before + financing - sum(qty*ref + spread +
    impact + fee)``; ``equity = cash + sum(positions * mark[t+1])``.
    """

    qty: FloatArray
    price: FloatArray
    ref: FloatArray
    spread: FloatArray
    impact: FloatArray
    fee: FloatArray
    notional: FloatArray
    positions: FloatArray
    cash: FloatArray
    equity: FloatArray
    exec_index: npt.NDArray[np.intp]


@dataclass(frozen=True)
class SequenceResult:
    """Per-row arrays (T x N, or T): row 0 is the initial state, row t the state after bar t's fills,
    marked at bar t's close. Same field meanings as :class:`StepResult`; ``financing`` (T) is the interest
    credited (negative: paid) at row t on the book held since row t-1's close, 0 at row 0."""

    positions: FloatArray
    cash: FloatArray
    equity: FloatArray
    qty: FloatArray
    price: FloatArray
    ref: FloatArray
    spread: FloatArray
    impact: FloatArray
    fee: FloatArray
    notional: FloatArray
    financing: FloatArray

    @property
    def cost(self) -> FloatArray:
        """Total execution cost per row (currency): spread + impact + fees over symbols."""
        return (self.spread + self.impact + self.fee).sum(axis=1)


def _decision_rows(market: MarketArrays, positions: FloatArray, cash: FloatArray, targets: FloatArray,
                   t: npt.ArrayLike) -> npt.NDArray[np.intp]:
    """The B decision rows of a step, after checking every input's shape and range."""
    B, N = positions.shape
    d = np.asarray(t, dtype=np.intp).reshape(-1)
    if d.shape != (B,) or np.shape(cash) != (B,) or np.shape(targets) != (B, N) or len(market.symbols) != N:
        raise ConfigError(f"step shapes: positions {positions.shape}, cash {np.shape(cash)}, targets "
                          f"{np.shape(targets)}, t {d.shape}; market has {len(market.symbols)} symbols")
    T = market.open.shape[0]
    if np.any(d < 0) or np.any(d >= T - 1):
        raise ConfigError(f"step: decision index must be in [0, {T - 2}], got {d.min()}..{d.max()}")
    return d


def step(
    market: MarketArrays,
    params: ExecParams,
    positions: FloatArray,
    cash: FloatArray,
    targets: FloatArray,
    t: npt.ArrayLike,
    rng: np.random.Generator,
    *,
    targets_are_weights: bool = True,
) -> StepResult:
    """Execute B envs' targets decided at their bar ``t`` (B,) on bar ``t+1`` with the compiled
    :func:`ai_trading.execution.kernels.step_batch`, per env the arithmetic of one :func:`run_targets` row.

    ``positions`` (B x N shares), ``cash`` (B), ``targets`` (B x N weights of equity, or shares). The RL
    envs call the kernel directly with preallocated buffers.
    """
    pos = np.array(positions, dtype=np.float64, order="C")
    B, N = pos.shape
    d = _decision_rows(market, pos, cash, targets, t)
    noise = draw_noise(rng, (B, N))
    acc = np.array(cash, dtype=np.float64)
    equity = np.zeros(B)
    out = np.zeros((B, N, N_FILL))
    step_batch(market.open, market.high, market.low, market.close, market.volume, market.mark, market.tradable,
               market.half_spread, market.vol, market.year_frac, params.impact_scale, params.values, d,
               np.ascontiguousarray(targets, dtype=np.float64), targets_are_weights, noise,
               np.arange(B), pos, acc, equity, out)
    return StepResult(qty=out[..., FILL_QTY], price=out[..., FILL_PRICE], ref=out[..., FILL_REF],
                      spread=out[..., FILL_SPREAD], impact=out[..., FILL_IMPACT], fee=out[..., FILL_FEE],
                      notional=out[..., FILL_NOTIONAL], positions=pos, cash=acc, equity=equity,
                      exec_index=d + 1)


def run_targets(
    market: MarketArrays,
    params: ExecParams,
    targets: FloatArray,
    rng: np.random.Generator,
    *,
    initial_cash: float,
    initial_positions: FloatArray | None = None,
    targets_are_weights: bool = True,
) -> SequenceResult:
    """Execute a whole T x N target sequence (row t decided at bar t's close) with the compiled kernel."""
    T, N = market.open.shape
    targets = np.ascontiguousarray(targets, dtype=np.float64)
    if targets.shape != (T, N):
        raise ConfigError(f"targets have shape {targets.shape}, market is {(T, N)}")
    pos0 = np.zeros(N) if initial_positions is None else np.asarray(initial_positions, dtype=np.float64)
    noise = draw_noise(rng, (T - 1, N))
    out = {name: np.zeros((T, N)) for name in ("positions", "qty", "price", "ref", "spread", "impact", "fee",
                                                "notional")}
    cash, equity, financing = np.zeros(T), np.zeros(T), np.zeros(T)
    run_sequence(market.open, market.high, market.low, market.close, market.volume, market.mark,
                 market.tradable, market.half_spread, market.vol, market.year_frac, params.impact_scale,
                 params.values, targets, targets_are_weights, noise, float(initial_cash), pos0, out["positions"],
                 cash, equity, out["qty"], out["price"], out["ref"], out["spread"], out["impact"], out["fee"],
                 out["notional"], financing)
    return SequenceResult(cash=cash, equity=equity, financing=financing, **out)
