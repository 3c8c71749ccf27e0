"""Throughput of the execution simulator against a plain-Python loop doing the same accounting.

Run: ``python benchmarks/bench_simulator.py`` (single process; pin one core with ``taskset -c 0``).
Prints bar-steps/s of the vectorised paths (full cost model, default config) and fills/s and orders/s of
the per-order path, each with its ratio to the plain-Python baseline measured in the same run.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ai_trading.data import load_bars
from ai_trading.execution import (
    ExecutionSimulator,
    MarketArrays,
    OrderSide,
    SimOrder,
    SimulatorConfig,
    run_targets,
    step,
)
from ai_trading.execution.market import (
    P_BAR_SECONDS,
    P_LAT_MS,
    P_LAT_SIGMA,
    P_LOGNORMAL,
    P_SPIKE_MS,
    P_SPIKE_VOL,
    P_SPIKE_Z,
    draw_noise,
)


def best_of(fn: Callable[[], Any], repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def py_path_price(o: float, h: float, lo: float, c: float, f: float) -> float:
    if f <= 0.0:
        return o
    x, y = (lo, h) if c >= o else (h, lo)
    d1, d2, d3 = abs(o - x), abs(x - y), abs(y - c)
    dist = f * (d1 + d2 + d3)
    if dist <= d1:
        return o + (x - o) * (dist / d1) if d1 > 0 else o
    r2 = dist - d1
    if r2 <= d2:
        return x + (y - x) * (r2 / d2) if d2 > 0 else x
    r3 = r2 - d2
    return y + (c - y) * min(r3 / d3, 1.0) if d3 > 0 else c


def py_latency_fraction(p: np.ndarray, sig: float, z_lat: float, z_spike: float) -> float:
    """Latency (with a spike when its normal falls below the spike quantile) as a fraction of the bar."""
    la = p[P_LAT_MS] * math.exp(p[P_LAT_SIGMA] * z_lat) if p[P_LOGNORMAL] > 0 else p[P_LAT_MS]
    la += p[P_SPIKE_MS] * (1 + p[P_SPIKE_VOL] * sig * 1e4) if z_spike < p[P_SPIKE_Z] else 0.0
    return min(la * 1e-3 / p[P_BAR_SECONDS], 1.0)


def py_sequence(m: MarketArrays, p: np.ndarray, scale: list[float], targets: list[list[float]],
                noise: list[list[list[float]]], cash: float, rows: int) -> float:
    """Plain-Python loop: weights -> shares -> capped market fills with spread, impact and fees."""
    o, h, lo, c, v = (a.tolist() for a in (m.open, m.high, m.low, m.close, m.volume))
    mark, hs, vol, trad = m.mark.tolist(), m.half_spread.tolist(), m.vol.tolist(), m.tradable.tolist()
    N = len(scale)
    pos = [0.0] * N
    for t in range(1, rows):
        d = t - 1
        eq_d = cash + sum(pos[n] * mark[d][n] for n in range(N))
        for n in range(N):
            mk = mark[d][n]
            trade = (targets[d][n] * eq_d) / mk - pos[n] if mk > 0 else -pos[n]
            if not trad[t][n] or abs(trade) <= 1e-9 or v[t][n] <= 0:
                continue
            side = 1.0 if trade > 0 else -1.0
            sig = vol[d][n]
            ref = py_path_price(o[t][n], h[t][n], lo[t][n], c[t][n], py_latency_fraction(p, sig, *noise[d][n]))
            q = min(abs(trade), p[3] * v[t][n])
            imp = scale[n] * (p[0] + p[1] * sig + p[2] * sig * math.sqrt(q / v[t][n]))
            price = ref * (1 + side * (hs[d][n] + imp))
            fee = max(p[5] * q + p[6] * q * price, p[7])
            pos[n] += side * q
            cash -= side * q * ref + q * ref * hs[d][n] + q * ref * imp + fee
    return cash + sum(pos[n] * mark[rows - 1][n] for n in range(N))


def bench_vectorised(name: str, market: MarketArrays, sim: ExecutionSimulator) -> None:
    T, N = market.open.shape
    params = sim.params
    targets = np.clip(np.sin(np.arange(T)[:, None] / 40.0 + np.arange(N)[None, :]), -0.9, 0.9) / N
    seconds = best_of(lambda: run_targets(market, params, targets, np.random.default_rng(0), initial_cash=1e6))
    rate = (T - 1) * N / seconds
    # Baseline on the same draws (first rows only: it is slow); checks it computes the same equity.
    rows = min(T, max(2, 60_000 // N))
    rng = np.random.default_rng(0)
    noise = draw_noise(rng, (T - 1, N)).tolist()
    t0 = time.perf_counter()
    py_eq = py_sequence(market, params.values, params.impact_scale.tolist(), targets.tolist(), noise, 1e6, rows)
    py_rate = (rows - 1) * N / (time.perf_counter() - t0)
    sub = dataclasses.replace(market, **{k: getattr(market, k)[:rows] for k in (
        "open", "high", "low", "close", "volume", "mark", "tradable", "half_spread", "vol")})
    check = run_targets(sub, params, targets[:rows], np.random.default_rng(0), initial_cash=1e6).equity[-1]
    assert math.isclose(py_eq, check, rel_tol=1e-9), (py_eq, check)
    print(f"run_targets  {name:<28} T={T:>6} N={N:>3}  {rate / 1e6:8.2f} M bar-steps/s   "
          f"plain Python {py_rate / 1e6:6.3f} M/s   ratio {rate / py_rate:7.1f}x")


def bench_step(market: MarketArrays, sim: ExecutionSimulator, batch: int) -> None:
    T, N = market.open.shape
    rng = np.random.default_rng(0)
    pos, cash = np.zeros((batch, N)), np.full(batch, 1e6)
    targets = rng.uniform(-0.5, 0.5, (batch, N)) / N
    idx = rng.integers(0, T - 1, batch)
    calls = 2_000
    seconds = best_of(lambda: [step(market, sim.params, pos, cash, targets, idx, rng) for _ in range(calls)], 2)
    print(f"step (numpy) batch={batch:<3} N={N:>3}  {calls / seconds:10.0f} calls/s  "
          f"{calls * batch * N / seconds / 1e6:6.2f} M bar-steps/s")


def bench_orders(frame: Any, config: SimulatorConfig) -> None:
    sim = ExecutionSimulator(config, frame, seed=0)
    stamps = frame.index.get_level_values("timestamp")
    rng = np.random.default_rng(1)
    # Orders on distinct bars: the simulator shares a bar's volume between the orders on it, the plain-Python
    # baseline does not, so overlapping orders would make the two do different work.
    n = 20_000
    at = np.sort(rng.choice(len(stamps) - 400, n, replace=False))
    qty = rng.uniform(1.0, 60.0, n)
    orders = [SimOrder("STOXX50F", OrderSide.BUY if i % 2 else OrderSide.SELL, float(qty[i]), stamps[at[i]])
              for i in range(n)]
    sim.execute_many(orders[:10])  # compile
    results: list[Any] = []
    seconds = best_of(lambda: results.append(sim.execute_many(orders)), 3)
    fills = sum(len(r.fills) for r in results[-1])
    single = orders[:5_000]
    one_s = best_of(lambda: [sim.execute(o) for o in single], 2)
    # Plain-Python per-order baseline: the same fill rule, bar by bar, no compiled code.
    m, p = sim.market, sim.params.values
    o, h, lo, c, v = (a[:, 0].tolist() for a in (m.open, m.high, m.low, m.close, m.volume))
    hs, vol, ns = m.half_spread[:, 0].tolist(), m.vol[:, 0].tolist(), m.timestamps.asi8.tolist()
    import bisect

    def py_orders() -> int:
        count = 0
        draws = draw_noise(np.random.default_rng(0), (len(orders) * 4,)).tolist()
        k = 0
        for order in orders:
            b = bisect.bisect_right(ns, order.submitted_at.value)
            left, side = order.quantity, order.side.sign
            while left > 1e-9 and b < len(o):
                d = b - 1
                f = py_latency_fraction(p, vol[d], *draws[k])
                k += 1
                ref = py_path_price(o[b], h[b], lo[b], c[b], f)
                q = min(left, p[3] * v[b])
                imp = p[0] + p[1] * vol[d] + p[2] * vol[d] * math.sqrt(q / v[b])
                price = ref * (1 + side * (hs[d] + imp))
                _fee = max(p[5] * q + p[6] * q * price, p[7])
                left -= q
                count += 1
                b += 1
        return count

    t0 = time.perf_counter()
    py_fills = py_orders()
    py_s = time.perf_counter() - t0
    print(f"execute_many {n} orders  {n / seconds:10.0f} orders/s  {fills / seconds:10.0f} fills/s   "
          f"plain Python {py_fills / py_s:8.0f} fills/s   ratio {fills / seconds / (py_fills / py_s):5.1f}x")
    print(f"execute one at a time     {len(single) / one_s:10.0f} orders/s")


def main() -> None:
    config = SimulatorConfig()
    stoxx = load_bars(["STOXX50F"])
    daily = load_bars(["SP500", "NASDAQ", "NVDA", "ORCL", "YHOO"])
    sim_stoxx = ExecutionSimulator(config, stoxx, seed=0)
    sim_daily = ExecutionSimulator(config, daily, seed=0)
    wide = dataclasses.replace(sim_daily.market, symbols=tuple(f"S{i}" for i in range(50)), **{
        k: np.ascontiguousarray(np.tile(getattr(sim_daily.market, k), (1, 10))) for k in (
            "open", "high", "low", "close", "volume", "mark", "tradable", "half_spread", "vol")})
    sim_wide = ExecutionSimulator(config, daily, seed=0)
    object.__setattr__(sim_wide, "params", dataclasses.replace(sim_daily.params,
                                                               impact_scale=np.ones(50)))
    t0 = time.perf_counter()
    run_targets(sim_stoxx.market, sim_stoxx.params, np.zeros(sim_stoxx.market.open.shape),
                np.random.default_rng(0), initial_cash=1.0)
    print(f"first kernel call (numba cache load or compile): {time.perf_counter() - t0:.2f}s")
    bench_vectorised("STOXX50F 1-min", sim_stoxx.market, sim_stoxx)
    bench_vectorised("5 daily symbols", sim_daily.market, sim_daily)
    bench_vectorised("5 daily symbols tiled x10", wide, sim_wide)
    for batch in (1, 64):
        bench_step(sim_daily.market, sim_daily, batch)
    bench_orders(stoxx, config)


if __name__ == "__main__":
    main()
