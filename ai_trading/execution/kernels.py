"""Compiled kernels: one child-order slice on one bar, the target-sequence loop and the order loop.

:func:`fill_slice` is the single definition of a fill: the sequence, step and order kernels all call it.
:func:`run_sequence` inlines one env's bar (the arithmetic of :func:`step_one`, in the same order) because
calling ``step_one`` per row halved its speed on one symbol; a test pins repeated batched steps equal to
the sequence, bit for bit. Random latency is turned into numbers in numpy beforehand (one function,
:func:`ai_trading.execution.market.latency_base_ms`), so every path sees the same draws.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ai_trading.execution.market import (
    P_BAND,
    P_BAR_SECONDS,
    P_CAP,
    P_FEE_MIN,
    P_FEE_RATE,
    P_FEE_SHARE,
    P_FIXED,
    P_HAIRCUT,
    P_IMPACT,
    P_SPIKE_MS,
    P_SPIKE_PROB,
    P_SPIKE_VOL,
    P_VOLC,
)

EPS_SHARES = 1e-9  # a remaining quantity below this is treated as done (float noise, not an order)


@njit(cache=True)
def path_price(o: float, h: float, low: float, c: float, f: float) -> float:
    """Price at fraction ``f`` of the bar along open -> low -> high -> close (up bar) or
    open -> high -> low -> close (down bar), moving at constant speed along the path."""
    if f <= 0.0:
        return o
    if c >= o:
        x, y = low, h
    else:
        x, y = h, low
    d1, d2, d3 = abs(o - x), abs(x - y), abs(y - c)
    dist = f * (d1 + d2 + d3)
    if dist <= d1:
        if d1 > 0.0:
            return o + (x - o) * (dist / d1)
        return o
    r2 = dist - d1
    if r2 <= d2:
        if d2 > 0.0:
            return x + (y - x) * (r2 / d2)
        return x
    r3 = r2 - d2
    if d3 > 0.0:
        return y + (c - y) * min(r3 / d3, 1.0)
    return c


@njit(cache=True)
def fill_slice(side: float, want: float, o: float, h: float, low: float, c: float, v: float, hs: float,
               sig: float, lat_base: float, u_spike: float, scale: float, is_limit: bool, limit: float,
               p: np.ndarray) -> tuple[float, float, float, float, float, float, float]:
    """Execute up to ``want`` shares on one bar; returns (qty, price, ref, spread, impact, fee, maker).

    ``hs`` and ``sig`` are the half-spread and volatility known at the decision bar; ``ref`` is the path
    price after the latency (for passive limit fills: the limit). Nothing fills: qty 0, prices NaN.
    """
    nothing = (0.0, math.nan, math.nan, 0.0, 0.0, 0.0, 0.0)
    if want <= EPS_SHARES or v <= 0.0:
        return nothing
    lat = lat_base
    if u_spike < p[P_SPIKE_PROB]:
        lat = lat + p[P_SPIKE_MS] * (1.0 + p[P_SPIKE_VOL] * sig * 1e4)
    f = lat * 1e-3 / p[P_BAR_SECONDS]
    if f > 1.0:
        f = 1.0
    ref = path_price(o, h, low, c, f)
    cap = p[P_CAP] * v
    maker = 0.0
    if (not is_limit) or side * (limit - ref) >= 0.0:
        q = want if want < cap else cap
        imp = scale * (p[P_FIXED] + p[P_VOLC] * sig + p[P_IMPACT] * sig * math.sqrt(q / v))
        price = ref * (1.0 + side * (hs + imp))
        spread_cost = q * ref * hs
        impact_cost = q * ref * imp
        if is_limit and side * (price - limit) > 0.0:
            price = limit
            total = side * (price - ref) * q
            rate = hs + imp
            spread_cost = total * hs / rate if rate > 0.0 else 0.0
            impact_cost = total - spread_cost
    else:
        through = low < limit if side > 0.0 else h > limit
        if not through:
            return nothing
        room = cap * (1.0 - p[P_HAIRCUT])
        q = want if want < room else room
        price = limit
        ref = limit
        spread_cost = 0.0
        impact_cost = 0.0
        maker = 1.0
    fee = p[P_FEE_SHARE] * q + p[P_FEE_RATE] * (q * price)
    if fee < p[P_FEE_MIN]:
        fee = p[P_FEE_MIN]
    return q, price, ref, spread_cost, impact_cost, fee, maker


@njit(cache=True)
def run_sequence(o: np.ndarray, h: np.ndarray, low: np.ndarray, c: np.ndarray, v: np.ndarray,
                 mark: np.ndarray, tradable: np.ndarray, hs: np.ndarray, vol: np.ndarray, scale: np.ndarray,
                 p: np.ndarray, targets: np.ndarray, weights: bool, lat_base: np.ndarray, u_spike: np.ndarray,
                 cash0: float, pos0: np.ndarray, out_pos: np.ndarray, out_cash: np.ndarray,
                 out_equity: np.ndarray, out_qty: np.ndarray, out_price: np.ndarray, out_ref: np.ndarray,
                 out_spread: np.ndarray, out_impact: np.ndarray, out_fee: np.ndarray,
                 out_notional: np.ndarray) -> None:
    """Targets decided at row d's close execute on row d+1; row 0 of every output is the initial state."""
    T, N = o.shape
    pos = pos0.copy()
    cash = cash0
    eq = cash
    for n in range(N):
        eq = eq + pos[n] * mark[0, n]
        out_pos[0, n] = pos[n]
        out_price[0, n] = math.nan
        out_ref[0, n] = math.nan
    out_cash[0] = cash
    out_equity[0] = eq
    band = p[P_BAND]
    for t in range(1, T):
        d = t - 1
        eq_d = cash
        for n in range(N):
            eq_d = eq_d + pos[n] * mark[d, n]
        for n in range(N):
            m = mark[d, n]
            target = (targets[d, n] * eq_d / m if m > 0.0 else 0.0) if weights else targets[d, n]
            trade = target - pos[n]
            if band > 0.0 and abs(trade) * m < band * abs(eq_d):
                trade = 0.0
            if not tradable[t, n]:
                trade = 0.0
            side = 1.0 if trade > 0.0 else -1.0
            q, price, ref, sc, ic, fee, _ = fill_slice(side, abs(trade), o[t, n], h[t, n], low[t, n], c[t, n],
                                                       v[t, n], hs[d, n], vol[d, n], lat_base[d, n],
                                                       u_spike[d, n], scale[n], False, 0.0, p)
            if q > 0.0:
                filled = side * q
                pos[n] = pos[n] + filled
                cash = cash - (((filled * ref + sc) + ic) + fee)
                out_qty[t, n] = filled
                out_notional[t, n] = q * price
            out_price[t, n] = price
            out_ref[t, n] = ref
            out_spread[t, n] = sc
            out_impact[t, n] = ic
            out_fee[t, n] = fee
            out_pos[t, n] = pos[n]
        eq = cash
        for n in range(N):
            eq = eq + pos[n] * mark[t, n]
        out_cash[t] = cash
        out_equity[t] = eq


@njit(cache=True)
def run_orders(o: np.ndarray, h: np.ndarray, low: np.ndarray, c: np.ndarray, v: np.ndarray, hs: np.ndarray,
               vol: np.ndarray, scale: np.ndarray, p: np.ndarray, sym: np.ndarray, side: np.ndarray,
               qty: np.ndarray, is_limit: np.ndarray, limit: np.ndarray, stop: np.ndarray,
               filled: np.ndarray, next_bar: np.ndarray, first: int, lat_pool: np.ndarray,
               spike_pool: np.ndarray, out_order: np.ndarray, out_bar: np.ndarray, out: np.ndarray
               ) -> tuple[int, int]:
    """Work orders ``first..`` bar by bar (one child slice per bar, one random draw per bar).

    Stops when the draw pool runs out; returns (order to resume at, fills written). ``filled`` and
    ``next_bar`` carry each order's progress across calls; ``out`` rows are the 7 fields of a fill.
    """
    k = 0
    m = 0
    pool = lat_pool.shape[0]
    for i in range(first, qty.shape[0]):
        b = next_bar[i]
        s = sym[i]
        while b <= stop[i]:
            want = qty[i] - filled[i]
            if want <= EPS_SHARES:
                break
            if k == pool:
                next_bar[i] = b
                return i, m
            d = b - 1
            q, price, ref, sc, ic, fee, maker = fill_slice(side[i], want, o[b, s], h[b, s], low[b, s],
                                                           c[b, s], v[b, s], hs[d, s], vol[d, s], lat_pool[k],
                                                           spike_pool[k], scale[s], is_limit[i], limit[i], p)
            k += 1
            if q > 0.0:
                filled[i] = filled[i] + q
                out_order[m] = i
                out_bar[m] = b
                out[m, 0] = q
                out[m, 1] = price
                out[m, 2] = ref
                out[m, 3] = sc
                out[m, 4] = ic
                out[m, 5] = fee
                out[m, 6] = maker
                m += 1
            b += 1
        next_bar[i] = b
    return qty.shape[0], m


@njit(cache=True)
def step_one(o: np.ndarray, h: np.ndarray, low: np.ndarray, c: np.ndarray, v: np.ndarray, mark: np.ndarray,
             tradable: np.ndarray, hs: np.ndarray, vol: np.ndarray, scale: np.ndarray, p: np.ndarray, d: int,
             targets: np.ndarray, weights: bool, lat_base: np.ndarray, u_spike: np.ndarray, r: int,
             pos: np.ndarray, cash: float, out: np.ndarray, b: int) -> tuple[float, float]:
    """One env, one bar: env ``b``'s targets ``targets[b]`` (N,) decided at row ``d``'s close execute on row ``d+1``.

    Exactly the arithmetic of one row of :func:`run_sequence` (same operation order, so the same bits).
    Latency and spike draws are row ``r`` of ``lat_base``/``u_spike`` (R, N). ``pos[b]`` (N,) is updated in
    place; ``out[b]`` (N, 7) receives qty (signed), price, ref, spread, impact, fee, notional per symbol.
    Rows are addressed by index, not passed as views (a view costs a reference count per call).
    Returns (cash, equity marked at row ``d+1``'s mark).
    """
    N = pos.shape[1]
    e = d + 1
    band = p[P_BAND]
    eq_d = cash
    for n in range(N):
        eq_d = eq_d + pos[b, n] * mark[d, n]
    for n in range(N):
        m = mark[d, n]
        target = (targets[b, n] * eq_d / m if m > 0.0 else 0.0) if weights else targets[b, n]
        trade = target - pos[b, n]
        if band > 0.0 and abs(trade) * m < band * abs(eq_d):
            trade = 0.0
        if not tradable[e, n]:
            trade = 0.0
        side = 1.0 if trade > 0.0 else -1.0
        q, price, ref, sc, ic, fee, _ = fill_slice(side, abs(trade), o[e, n], h[e, n], low[e, n], c[e, n],
                                                   v[e, n], hs[d, n], vol[d, n], lat_base[r, n], u_spike[r, n],
                                                   scale[n], False, 0.0, p)
        out[b, n, 0] = 0.0
        out[b, n, 6] = 0.0
        if q > 0.0:
            filled = side * q
            pos[b, n] = pos[b, n] + filled
            cash = cash - (((filled * ref + sc) + ic) + fee)
            out[b, n, 0] = filled
            out[b, n, 6] = q * price
        out[b, n, 1] = price
        out[b, n, 2] = ref
        out[b, n, 3] = sc
        out[b, n, 4] = ic
        out[b, n, 5] = fee
    eq = cash
    for n in range(N):
        eq = eq + pos[b, n] * mark[e, n]
    return cash, eq


@njit(cache=True)
def step_batch(o: np.ndarray, h: np.ndarray, low: np.ndarray, c: np.ndarray, v: np.ndarray, mark: np.ndarray,
               tradable: np.ndarray, hs: np.ndarray, vol: np.ndarray, scale: np.ndarray, p: np.ndarray,
               d: np.ndarray, targets: np.ndarray, weights: bool, lat_base: np.ndarray, u_spike: np.ndarray,
               pos: np.ndarray, cash: np.ndarray, equity: np.ndarray, out: np.ndarray) -> None:
    """B envs, one bar each (env b decided at its row ``d[b]``): :func:`step_one` per env.

    ``pos`` (B, N) and ``cash`` (B,) are updated in place; ``equity`` (B,) and ``out`` (B, N, 7) are written.
    """
    for b in range(pos.shape[0]):
        cash[b], equity[b] = step_one(o, h, low, c, v, mark, tradable, hs, vol, scale, p, d[b], targets,
                                      weights, lat_base, u_spike, b, pos, cash[b], out, b)
