"""Spread and volatility estimated from bars alone, for markets without quotes.

Every estimate at bar ``t`` uses bars up to and including ``t`` only (no look-ahead), so the simulator can
use it when a decision is taken at bar ``t``'s close.

- Corwin & Schultz (2012), "A Simple Way to Estimate Bid-Ask Spreads from Daily High and Low Prices":
  two-bar high/low ranges, with the overnight-gap adjustment of their section 3, negative two-bar
  estimates set to zero, then averaged over a rolling window.
- Abdi & Ranaldo (2017), "A Simple Estimation of Bid-Ask Spreads from Daily Close, High, and Low Prices":
  ``s^2 = 4 E[(c_t - eta_t)(c_t - eta_{t+1})]`` with ``eta`` the log mid-range, averaged over the window.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

_K = 3.0 - 2.0 * np.sqrt(2.0)


def _rolling_mean(x: FloatArray, window: int) -> FloatArray:
    """Mean of the last ``window`` finite values (fewer during warm-up; NaN when none)."""
    finite = np.isfinite(x)
    values = np.where(finite, x, 0.0)
    csum = np.concatenate(([0.0], np.cumsum(values)))
    ccount = np.concatenate(([0], np.cumsum(finite)))
    idx = np.arange(1, len(x) + 1)
    lo = np.maximum(idx - window, 0)
    count = ccount[idx] - ccount[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, (csum[idx] - csum[lo]) / count, np.nan)


def corwin_schultz(high: FloatArray, low: FloatArray, close: FloatArray, window: int) -> FloatArray:
    """Full relative spread (fraction of price) per bar, from the bar and its predecessor."""
    h, lo = high.astype(np.float64).copy(), low.astype(np.float64).copy()
    prev_close = np.concatenate(([np.nan], close[:-1]))
    # Overnight/gap adjustment: shift bar t's range so it overlaps the previous close.
    up = lo - prev_close
    down = prev_close - h
    shift = np.where(up > 0, -up, np.where(down > 0, down, 0.0))
    shift = np.where(np.isfinite(shift), shift, 0.0)
    h, lo = h + shift, lo + shift
    h_prev = np.concatenate(([np.nan], high[:-1]))
    l_prev = np.concatenate(([np.nan], low[:-1]))
    beta = np.log(h_prev / l_prev) ** 2 + np.log(h / lo) ** 2
    gamma = np.log(np.maximum(h_prev, h) / np.minimum(l_prev, lo)) ** 2
    alpha = (np.sqrt(2.0 * beta) - np.sqrt(beta)) / _K - np.sqrt(gamma / _K)
    two_bar = 2.0 * (np.exp(alpha) - 1.0) / (1.0 + np.exp(alpha))
    two_bar = np.where(np.isfinite(two_bar), np.maximum(two_bar, 0.0), np.nan)
    return _rolling_mean(two_bar, window)


def abdi_ranaldo(high: FloatArray, low: FloatArray, close: FloatArray, window: int) -> FloatArray:
    """Full relative spread (fraction of price) per bar; pairs (t-1, t) so bar t's value is known at t."""
    eta = 0.5 * (np.log(high) + np.log(low))
    c_prev = np.concatenate(([np.nan], np.log(close[:-1])))
    eta_prev = np.concatenate(([np.nan], eta[:-1]))
    products = (c_prev - eta_prev) * (c_prev - eta)
    s2 = 4.0 * _rolling_mean(products, window)
    return np.sqrt(np.maximum(s2, 0.0))


def ewma_volatility(close: FloatArray, high: FloatArray, low: FloatArray, halflife: float) -> FloatArray:
    """Per-bar volatility (fraction): EWMA of squared log close-to-close returns, seeded with Parkinson."""
    n = len(close)
    out = np.empty(n, dtype=np.float64)
    if n == 0:
        return out
    decay = 0.5 ** (1.0 / halflife)
    parkinson = np.log(high[0] / low[0]) ** 2 / (4.0 * np.log(2.0))
    var = float(parkinson) if np.isfinite(parkinson) else 0.0
    out[0] = np.sqrt(var)
    returns = np.diff(np.log(close))
    for i in range(1, n):
        r = returns[i - 1]
        if np.isfinite(r):
            var = decay * var + (1.0 - decay) * r * r
        out[i] = np.sqrt(var)
    return out
