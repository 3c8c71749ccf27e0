"""Baseline strategies reported beside every evaluated strategy: cash, buy-and-hold and a
volatility-targeted trend rule. Target weights are computed from the bars only, causally: the weight at
row ``t`` uses closes up to ``t`` and executes on bar ``t+1`` (the simulator's timing).

A symbol without a bar at a row gets weight 0 (the backtest also zeroes it, see
:func:`~ai_trading.evaluation.backtest.decision_mask`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from ai_trading.errors import ConfigError
from ai_trading.evaluation.backtest import decision_mask
from ai_trading.execution import MarketArrays

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]


def cash_weights(market: MarketArrays, start: int = 0, stop: int | None = None) -> FloatArray:
    """Stay in cash: all weights 0 (its equity is flat and its costs are 0 — a check of the accounting)."""
    stop = market.open.shape[0] if stop is None else stop
    return np.zeros((stop - start, market.open.shape[1]))


def buy_and_hold_weights(market: MarketArrays, start: int = 0, stop: int | None = None) -> FloatArray:
    """Equal capital in every symbol tradable at ``start``, then held: the weights drift with prices (no
    rebalancing), ``w[t, n] = h[n] * mark[t, n] / sum(h * mark[t])`` with ``h[n] = 1 / mark[start, n]``.

    The simulator then trades only to re-invest or fund the costs' cash drift. A symbol whose data end
    stays held at its last close and counts in the total, so the others are not bought with it; a symbol
    that starts later is not bought.
    """
    stop = market.open.shape[0] if stop is None else stop
    allowed = decision_mask(market)[start:stop]
    mark = market.mark[start:stop]
    held = allowed[0] & (mark[0] > 0)
    if not held.any():
        log.warning("buy_and_hold: no symbol tradable at row %d; staying in cash", start)
        return np.zeros_like(mark)
    shares = np.where(held, 1.0 / np.where(held, mark[0], 1.0), 0.0)
    value = np.where(held, shares * mark, 0.0)
    total = value.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.where((total > 0) & allowed, value / total, 0.0)
    return np.asarray(w, dtype=np.float64)


@dataclass(frozen=True)
class TrendConfig:
    """Volatility-targeted time-series momentum (Moskowitz, Ooi and Pedersen 2012).

    ``signal = sign(close_t / close_{t-lookback} - 1)``; ``weight = signal * min(target_vol / sigma_t,
    max_leverage) / n_symbols``, ``sigma_t`` the annualised standard deviation of the last ``vol_window``
    log returns. ``long_only`` replaces short signals by 0.
    """

    name: str = "trend"
    lookback: int = 126
    vol_window: int = 21
    target_vol: float = 0.15
    max_leverage: float = 1.0
    long_only: bool = True

    def __post_init__(self) -> None:
        if self.lookback < 1 or self.vol_window < 2:
            raise ConfigError(f"trend: lookback={self.lookback} must be >= 1 and vol_window={self.vol_window} >= 2")
        if not (self.target_vol > 0 and self.max_leverage > 0):
            raise ConfigError("trend: target_vol and max_leverage must be > 0")


def trend_weights(
    market: MarketArrays, config: TrendConfig, periods_per_year: float, start: int = 0, stop: int | None = None
) -> FloatArray:
    """Weights of the volatility-targeted trend rule on rows ``[start, stop)``; each symbol's signal and
    volatility are computed on its own bars (from the first row of the data, so no warm-up is lost)."""
    T, N = market.open.shape
    stop = T if stop is None else stop
    out = np.zeros((T, N))
    for n in range(N):
        rows = np.flatnonzero(market.tradable[:, n])
        if len(rows) <= config.lookback:
            continue
        close = pd.Series(market.close[rows, n])
        momentum = close / close.shift(config.lookback) - 1.0
        sigma = pd.Series(np.log(close.to_numpy())).diff().rolling(config.vol_window).std() * np.sqrt(periods_per_year)
        signal = np.sign(momentum.to_numpy())
        if config.long_only:
            signal = np.maximum(signal, 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            scale = np.minimum(config.target_vol / sigma.to_numpy(), config.max_leverage)
        w = np.nan_to_num(signal * scale, nan=0.0, posinf=0.0, neginf=0.0) / N
        out[rows, n] = w
    return np.where(decision_mask(market), out, 0.0)[start:stop]


@dataclass(frozen=True)
class BuyAndHoldConfig:
    """Buy-and-hold as a strategy (``strategy=buy_and_hold``); see :func:`buy_and_hold_weights`."""

    name: str = "buy_and_hold"


@dataclass(frozen=True)
class CashConfig:
    """Cash as a strategy; see :func:`cash_weights`."""

    name: str = "cash"
