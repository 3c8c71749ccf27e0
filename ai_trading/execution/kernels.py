"""Compiled kernels: one child-order slice on one bar, the target-sequence loop and the order loop.

:func:`fill_slice` is the single definition of a fill: the sequence, step and order kernels all call it.
:func:`run_sequence` runs one env's bars with the arithmetic of one env in :func:`step_batch`, in the same
order (calling ``step_batch`` per row would cost a reference count per array and row, which halved the
speed on one symbol); a test pins repeated batched steps equal to the sequence, bit for bit. Every path
draws its randomness with :func:`ai_trading.execution.market.draw_noise` (two standard normals per fill
slot) and turns it into latency only here, in :func:`fill_slice`, so all paths see the same latencies.
:func:`run_orders` works many orders bar-major so that the orders on one bar and symbol share its volume
(the vectorised kernels have one slice per bar and symbol, so nothing is shared there).
:func:`financing` is the single definition of the interest on the book held between two bars.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ai_trading.execution.market import (
    P_BAND,
    P_BAR_SECONDS,
    P_BORROW_FEE,
    P_CAP,
    P_CASH_RATE,
    P_DEBIT_RATE,
    P_FEE_MIN,
    P_FEE_RATE,
    P_FEE_SHARE,
    P_FIXED,
    P_HAIRCUT,
    P_IMPACT,
    P_LAT_MS,
    P_LAT_SIGMA,
    P_LOGNORMAL,
    P_SPIKE_MS,
    P_SPIKE_VOL,
    P_SPIKE_Z,
    P_VOLC,
)

EPS_SHARES = 1e-9  # a remaining quantity below this is treated as done (float noise, not an order)
# Columns of the fill row of one symbol in one step (``step_batch``'s ``out[b, n]``): signed shares, fill
# price, reference price, spread, impact and fee (currency), traded notional.
FILL_QTY, FILL_PRICE, FILL_REF, FILL_SPREAD, FILL_IMPACT, FILL_FEE, FILL_NOTIONAL = range(7)
N_FILL = 7
# Columns of one per-order fill (``run_orders``'s ``out[m]``): the first six as above (shares unsigned), then
# 1.0 for a maker fill, 0.0 for a taker fill.
ORDER_MAKER = 6


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
def path_range_after(o: float, h: float, low: float, c: float, f: float) -> tuple[float, float]:
    """(min, max) of the :func:`path_price` path over the fraction ``[f, 1]`` of the bar: the price at ``f``
    and the path's vertices after it (the same leg arithmetic as :func:`path_price`, so they agree)."""
    lo = path_price(o, h, low, c, f)
    hi = lo
    if c >= o:
        x, y = low, h
    else:
        x, y = h, low
    d1, d2, d3 = abs(o - x), abs(x - y), abs(y - c)
    dist = f * (d1 + d2 + d3) if f > 0.0 else 0.0
    if dist <= d1:
        lo, hi = min(lo, x), max(hi, x)
    if dist - d1 <= d2:
        lo, hi = min(lo, y), max(hi, y)
    return min(lo, c), max(hi, c)


@njit(cache=True, inline="always")
def param_tuple(p: np.ndarray) -> tuple[float, ...]:
    """The parameter vector as a tuple: the per-fill calls then pass plain floats, where an array argument
    would cost a reference-count round trip per call (the largest cost of a fill that does nothing)."""
    return (p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8], p[9], p[10], p[11], p[12], p[13], p[14], p[15])


@njit(cache=True)
def fill_slice(side: float, want: float, o: float, h: float, low: float, c: float, v: float, used: float,
               hs: float, sig: float, z_lat: float, z_spike: float, scale: float, is_limit: bool, limit: float,
               resting: bool, p: tuple[float, ...]) -> tuple[float, float, float, float, float, float, float]:
    """Execute up to ``want`` shares on one bar; returns (qty, price, ref, spread, impact, fee, maker).

    ``hs`` and ``sig`` are the half-spread and volatility known at the decision bar; ``ref`` is the path
    price after the latency (for passive limit fills: the limit). The slot's two standard normals set the
    latency: ``latency_ms`` (constant) or ``latency_ms * exp(latency_sigma * z_lat)`` (lognormal), plus a
    spike when ``z_spike`` falls below the spike probability's normal quantile. Nothing fills: qty 0,
    prices NaN. ``p`` is :func:`param_tuple` of the parameter vector.

    ``used`` shares of the bar's volume ``v`` went to earlier slices on this bar and symbol (0 on the
    vectorised paths): a slice fills at most ``room = participation_cap * v - used``, and its size-dependent
    impact is the bar's participation growing from ``u = used`` to ``u + q``: the total cost of a bar's
    participation ``U`` is ``impact_coef * sigma * U**1.5 / sqrt(v)`` per unit price, so the slice's average
    rate is ``impact_coef * sigma * ((u + q)**1.5 - u**1.5) / (q * sqrt(v))``; alone on its bar (``u = 0``)
    that is ``impact_coef * sigma * sqrt(q / v)``, and an order split into pieces on one bar pays what it
    pays unsplit.

    A limit is marketable when it reaches the far touch at arrival, ``side * (limit - ref * (1 + side *
    hs)) >= 0``: it takes liquidity like a market order, its price capped at the limit. Otherwise it fills
    as a maker, at the limit, on ``(1 - queue_haircut) * room`` shares, only if the path trades through the
    limit after the order is on the book: after the latency on its arrival bar, over the whole bar when
    ``resting`` (it was already working on an earlier bar).
    """
    nothing = (0.0, math.nan, math.nan, 0.0, 0.0, 0.0, 0.0)
    if want <= EPS_SHARES or v <= 0.0:
        return nothing
    lat = p[P_LAT_MS]
    if p[P_LOGNORMAL] > 0.0:
        lat = lat * math.exp(p[P_LAT_SIGMA] * z_lat)
    if z_spike < p[P_SPIKE_Z]:
        lat = lat + p[P_SPIKE_MS] * (1.0 + p[P_SPIKE_VOL] * sig * 1e4)
    f = lat * 1e-3 / p[P_BAR_SECONDS]
    if f > 1.0:
        f = 1.0
    ref = path_price(o, h, low, c, f)
    room = p[P_CAP] * v - used
    if used > 0.0 and room <= EPS_SHARES:
        return nothing  # earlier slices on this bar took its capacity
    maker = 0.0
    if (not is_limit) or side * (limit - ref * (1.0 + side * hs)) >= 0.0:
        q = want if want < room else room
        if used > 0.0:
            # ((u+q)^1.5 - u^1.5) / q without the cancellation of the difference of powers
            a = used + q
            part = (a * a + a * used + used * used) / ((a * math.sqrt(a) + used * math.sqrt(used)) * math.sqrt(v))
        else:
            part = math.sqrt(q / v)
        imp = scale * (p[P_FIXED] + p[P_VOLC] * sig + p[P_IMPACT] * sig * part)
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
        lo, hi = path_range_after(o, h, low, c, 0.0 if resting else f)
        through = lo < limit if side > 0.0 else hi > limit
        if not through:
            return nothing
        room = room * (1.0 - p[P_HAIRCUT])
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


@njit(cache=True, inline="always")
def financing(cash: float, short_value: float, year_frac: float, cash_rate: float, debit_rate: float,
              borrow_fee: float) -> float:
    """Interest (currency, signed) on the book held for ``year_frac`` years: ``cash`` earns ``cash_rate``
    when positive and pays ``debit_rate`` when negative; shorts worth ``short_value`` (>= 0) pay
    ``borrow_fee``. Rates are annual fractions, accrued simply over the interval."""
    rate = cash_rate if cash >= 0.0 else debit_rate
    return year_frac * (rate * cash - borrow_fee * short_value)


@njit(cache=True)
def trade_towards(target: float, weights: bool, position: float, eq_d: float, m: float, band: float,
                  tradable: bool) -> float:
    """Shares to trade from ``position`` towards ``target`` (a weight of equity ``eq_d`` at mark ``m``, or
    shares); 0 inside the no-trade band or on a bar where the symbol does not trade."""
    shares = (target * eq_d / m if m > 0.0 else 0.0) if weights else target
    trade = shares - position
    if band > 0.0 and abs(trade) * m < band * abs(eq_d):
        trade = 0.0
    if not tradable:
        trade = 0.0
    return trade


@njit(cache=True)
def run_sequence(o: np.ndarray, h: np.ndarray, low: np.ndarray, c: np.ndarray, v: np.ndarray,
                 mark: np.ndarray, tradable: np.ndarray, hs: np.ndarray, vol: np.ndarray, year_frac: np.ndarray,
                 scale: np.ndarray, p: np.ndarray, targets: np.ndarray, weights: bool, noise: np.ndarray,
                 cash0: float, pos0: np.ndarray, out_pos: np.ndarray, out_cash: np.ndarray, out_equity: np.ndarray,
                 out_qty: np.ndarray, out_price: np.ndarray, out_ref: np.ndarray, out_spread: np.ndarray,
                 out_impact: np.ndarray, out_fee: np.ndarray, out_notional: np.ndarray,
                 out_financing: np.ndarray) -> None:
    """Targets decided at row d's close execute on row d+1 (:mod:`ai_trading.execution.timing`, which the ML
    labels share) with the noise of slot ``noise[d, n]`` (T-1, N, 2); row 0 of every output is the initial
    state. Row d+1 first credits the :func:`financing` of the book held from d's close over
    ``year_frac[d + 1]`` (``out_financing``), after the targets were sized on d's equity."""
    T, N = o.shape
    pt = param_tuple(p)
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
    cash_rate, debit_rate, borrow_fee = p[P_CASH_RATE], p[P_DEBIT_RATE], p[P_BORROW_FEE]
    for t in range(1, T):
        d = t - 1
        eq_d = cash
        short = 0.0
        for n in range(N):
            eq_d = eq_d + pos[n] * mark[d, n]
            if pos[n] < 0.0:
                short = short - pos[n] * mark[d, n]
        fin = financing(cash, short, year_frac[t], cash_rate, debit_rate, borrow_fee)
        cash = cash + fin
        out_financing[t] = fin
        for n in range(N):
            trade = trade_towards(targets[d, n], weights, pos[n], eq_d, mark[d, n], band, tradable[t, n])
            side = 1.0 if trade > 0.0 else -1.0
            q, price, ref, sc, ic, fee, _ = fill_slice(side, abs(trade), o[t, n], h[t, n], low[t, n], c[t, n],
                                                       v[t, n], 0.0, hs[d, n], vol[d, n], noise[d, n, 0],
                                                       noise[d, n, 1], scale[n], False, 0.0, False, pt)
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
               qty: np.ndarray, is_limit: np.ndarray, limit: np.ndarray, start: np.ndarray, stop: np.ndarray,
               queue: np.ndarray, noise: np.ndarray, used: np.ndarray, filled: np.ndarray, active: np.ndarray,
               state: np.ndarray, out_order: np.ndarray, out_bar: np.ndarray, out: np.ndarray) -> int:
    """Work orders bar by bar, one child slice per order and bar, on rows ``start[i]..stop[i]``.

    Bar-major: on each bar the working orders take their slices in ``queue`` order (order indices sorted by
    first bar, then priority), so on one bar and symbol they compete for its volume in priority order;
    ``used`` (T, N) accumulates the shares every slice took on its bar and symbol (:func:`fill_slice`).
    A slice on bar ``t`` of symbol ``s`` uses noise slot ``noise[t - 1, s]``, the slot the vectorised paths
    use for that bar and symbol. ``filled`` (per order), ``used``, ``active`` (the working orders, in
    priority order) and ``state`` (bar, next ``queue`` position, number of working orders) carry the
    progress across calls: the kernel returns the number of fills written to ``out_order``, ``out_bar`` and
    ``out`` (the 7 fields of a fill) when they cannot hold another bar of fills, and is done when
    ``state[1] == len(queue)`` and ``state[2] == 0``. ``out`` must hold at least ``len(queue)`` rows.
    """
    pt = param_tuple(p)
    n = queue.shape[0]
    room = out.shape[0]
    t, nxt, na = state[0], state[1], state[2]
    m = 0
    while nxt < n or na > 0:
        if na == 0:
            t = start[queue[nxt]]
        while nxt < n and start[queue[nxt]] == t:
            active[na] = queue[nxt]
            na += 1
            nxt += 1
        if m + na > room:
            break
        d = t - 1
        k = 0
        for j in range(na):
            i = active[j]
            s = sym[i]
            q, price, ref, sc, ic, fee, maker = fill_slice(side[i], qty[i] - filled[i], o[t, s], h[t, s],
                                                           low[t, s], c[t, s], v[t, s], used[t, s], hs[d, s],
                                                           vol[d, s], noise[d, s, 0], noise[d, s, 1], scale[s],
                                                           is_limit[i], limit[i], t > start[i], pt)
            if q > 0.0:
                filled[i] = filled[i] + q
                used[t, s] = used[t, s] + q
                out_order[m] = i
                out_bar[m] = t
                out[m, FILL_QTY] = q
                out[m, FILL_PRICE] = price
                out[m, FILL_REF] = ref
                out[m, FILL_SPREAD] = sc
                out[m, FILL_IMPACT] = ic
                out[m, FILL_FEE] = fee
                out[m, ORDER_MAKER] = maker
                m += 1
            if qty[i] - filled[i] > EPS_SHARES and t < stop[i]:
                active[k] = i
                k += 1
        na = k
        t += 1
    state[0], state[1], state[2] = t, nxt, na
    return m


@njit(cache=True)
def step_batch(o: np.ndarray, h: np.ndarray, low: np.ndarray, c: np.ndarray, v: np.ndarray, mark: np.ndarray,
               tradable: np.ndarray, hs: np.ndarray, vol: np.ndarray, year_frac: np.ndarray, scale: np.ndarray,
               p: np.ndarray, d: np.ndarray, targets: np.ndarray, weights: bool, noise: np.ndarray,
               rows: np.ndarray, pos: np.ndarray, cash: np.ndarray, equity: np.ndarray, out: np.ndarray) -> None:
    """B envs, one bar each: env b's targets ``targets[b]`` (N,) decided at its row ``d[b]``'s close execute
    on row ``d[b] + 1`` with the noise ``noise[rows[b]]`` (N, 2).

    Per env exactly the arithmetic of one row of :func:`run_sequence` (same operation order, so the same
    bits, financing included). ``pos`` (B, N) and ``cash`` (B,) are updated in place; ``equity`` (B,)
    receives the equity marked at row ``d[b] + 1`` and ``out`` (B, N, 7) qty (signed), price, ref, spread,
    impact, fee, notional per symbol. All envs are stepped in one call: passing the arrays to a per-env
    function would cost a reference-count round trip per array and env.
    """
    B, N = pos.shape
    pt = param_tuple(p)
    band = pt[P_BAND]
    cash_rate, debit_rate, borrow_fee = p[P_CASH_RATE], p[P_DEBIT_RATE], p[P_BORROW_FEE]
    for b in range(B):
        dd = d[b]
        e = dd + 1
        r = rows[b]
        acc = cash[b]
        eq_d = acc
        short = 0.0
        for n in range(N):
            eq_d = eq_d + pos[b, n] * mark[dd, n]
            if pos[b, n] < 0.0:
                short = short - pos[b, n] * mark[dd, n]
        acc = acc + financing(acc, short, year_frac[e], cash_rate, debit_rate, borrow_fee)
        for n in range(N):
            trade = trade_towards(targets[b, n], weights, pos[b, n], eq_d, mark[dd, n], band, tradable[e, n])
            side = 1.0 if trade > 0.0 else -1.0
            q, price, ref, sc, ic, fee, _ = fill_slice(side, abs(trade), o[e, n], h[e, n], low[e, n], c[e, n],
                                                       v[e, n], 0.0, hs[dd, n], vol[dd, n], noise[r, n, 0],
                                                       noise[r, n, 1], scale[n], False, 0.0, False, pt)
            out[b, n, FILL_QTY] = 0.0
            out[b, n, FILL_NOTIONAL] = 0.0
            if q > 0.0:
                filled = side * q
                pos[b, n] = pos[b, n] + filled
                acc = acc - (((filled * ref + sc) + ic) + fee)
                out[b, n, FILL_QTY] = filled
                out[b, n, FILL_NOTIONAL] = q * price
            out[b, n, FILL_PRICE] = price
            out[b, n, FILL_REF] = ref
            out[b, n, FILL_SPREAD] = sc
            out[b, n, FILL_IMPACT] = ic
            out[b, n, FILL_FEE] = fee
        eq = acc
        for n in range(N):
            eq = eq + pos[b, n] * mark[e, n]
        cash[b] = acc
        equity[b] = eq
