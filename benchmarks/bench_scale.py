"""Scaling of the data path: a seeded synthetic universe at two sizes through ingest, read, validation,
the fingerprint, the load, the feature build, the market arrays, a vectorised backtest and a walk-forward.

Run: ``python benchmarks/bench_scale.py``: the issue's sizes, 50 and 500 symbols x 10 years of daily bars
(with the scaling exponents between them) and 20 symbols x 1 year of 1-minute bars (several minutes).
``--quick``: 20 and 100 symbols x 10 years daily only (about a minute). ``--symbols``, ``--years`` and
``--freq`` pick other daily pairs or frequencies.

Each size runs in its own process. A stage's peak memory is its own: the peak RSS during the stage above the
RSS when it starts (``/proc/self/clear_refs`` resets the kernel's high-water mark ``VmHWM`` to the current
RSS before each stage), so what earlier stages hold is not counted. For that figure to be what a stage holds
live rather than what allocators keep cached, the child runs with glibc's mmap threshold fixed
(``MALLOC_MMAP_THRESHOLD_``: large arrays are mapped and unmapped, not kept in the heap) and Arrow on the
system allocator (``ARROW_DEFAULT_MEMORY_POOL=system``, jemalloc would keep freed pages). ``needed`` is the
bytes of the columns a stage needs: the bar columns (int64 timestamp + five float64 = 48 bytes a row) for the
data stages, the arrays a stage returns for the feature, market-array and backtest stages, and for the
walk-forward the columns a run reads and returns: the features and the market arrays it walks over plus its results.
Goals (the issue's): peak <= 2x needed; time exponent <= 1.1 between the two daily sizes. The fingerprint's
throughput is printed against raw ``hashlib.sha256`` over the same bytes, measured in the same process: see
:func:`fingerprint_ratio`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

COLUMN_BYTES = 48  # int64 timestamp + five float64 columns
PEAK_GOAL = 2.0  # stage peak over the bytes of the columns it needs
EXPONENT_GOAL = 1.1  # time exponent between the two sizes (1.0 = linear in rows)
# Allocator settings of the child process: freed memory leaves RSS at once (see the module docstring).
CHILD_ENV = {"MALLOC_MMAP_THRESHOLD_": "131072", "ARROW_DEFAULT_MEMORY_POOL": "system"}


def nbytes(obj: Any) -> int:
    """Bytes of the numpy arrays and pandas objects ``obj`` holds (dataclass fields, dicts, sequences)."""
    if isinstance(obj, np.ndarray):
        return int(obj.nbytes)
    if isinstance(obj, pd.DataFrame | pd.Series | pd.Index):
        return int(obj.memory_usage(index=True, deep=False).sum()) if isinstance(obj, pd.DataFrame) else int(
            obj.memory_usage(deep=False))
    if isinstance(obj, dict):
        return sum(nbytes(v) for v in obj.values())
    if isinstance(obj, list | tuple):
        return sum(nbytes(v) for v in obj)
    if hasattr(obj, "__dataclass_fields__"):
        return sum(nbytes(getattr(obj, f)) for f in obj.__dataclass_fields__)
    return 0


def universe_timestamps(years: int, freq: str) -> pd.DatetimeIndex:
    days = pd.bdate_range("2010-01-04", periods=252 * years, tz="UTC")
    if freq == "1d":
        return days
    minutes = pd.to_timedelta(np.arange(390), unit="min") + pd.Timedelta(hours=14, minutes=30)
    return pd.DatetimeIndex((days.values[:, None] + minutes.values[None, :]).ravel(), tz="UTC")


def write_universe(folder: Path, n_symbols: int, stamps: pd.DatetimeIndex, bars_per_year: float, seed: int) -> None:
    """One Parquet file per symbol: GBM closes (per-symbol drift and volatility), opens gapping from the
    previous close, high/low around both, lognormal volumes."""
    rng = np.random.default_rng(seed)
    step = 1.0 / bars_per_year
    for i in range(n_symbols):
        mu, sigma = rng.normal(0.06, 0.05), rng.uniform(0.15, 0.5)
        shocks = rng.normal((mu - 0.5 * sigma**2) * step, sigma * math.sqrt(step), len(stamps))
        close = rng.uniform(10, 300) * np.exp(np.cumsum(shocks))
        open_ = np.concatenate([[close[0]], close[:-1]]) * np.exp(rng.normal(0, 0.2 * sigma * math.sqrt(step),
                                                                             len(stamps)))
        wick = np.abs(rng.normal(0, 0.5 * sigma * math.sqrt(step), (2, len(stamps))))
        high = np.maximum(open_, close) * np.exp(wick[0])
        low = np.minimum(open_, close) * np.exp(-wick[1])
        volume = np.round(rng.lognormal(13, 0.6, len(stamps)))
        pd.DataFrame({"timestamp": stamps, "open": open_, "high": high, "low": low, "close": close,
                      "volume": volume}).to_parquet(folder / f"S{i:04d}.parquet", index=False)


def _hwm_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def measured(fn: Callable[[], Any]) -> tuple[Any, float, int]:
    """Result, seconds and peak RSS above the RSS before the call."""
    Path("/proc/self/clear_refs").write_text("5")  # reset the high-water mark to the current RSS
    before = _rss_bytes()
    t0 = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - t0
    return out, seconds, max(_hwm_bytes() - before, 0)


def fingerprint_ratio(fingerprint: Callable[[], object], raw: bytes, rounds: int = 15) -> tuple[float, float]:
    """The fingerprint's throughput over raw ``hashlib.sha256(raw)``'s, over the same bytes: the median over
    ``rounds`` of the ratio of the two CPU times measured back to back (in alternating order), and raw SHA-256's
    median MB/s. CPU time, not wall time: on a shared machine the wall time of either side mostly measures
    the other processes; process CPU time still counts every thread the fingerprint might use."""
    ratios, raw_seconds = [], []
    for i in range(rounds):
        seconds = {}
        for side in (("raw", "fp") if i % 2 else ("fp", "raw")):
            t0 = time.process_time()
            hashlib.sha256(raw).digest() if side == "raw" else fingerprint()
            seconds[side] = time.process_time() - t0
        ratios.append(seconds["raw"] / seconds["fp"])
        raw_seconds.append(seconds["raw"])
    return float(np.median(ratios)), len(raw) / float(np.median(raw_seconds)) / 1e6


def run_one(n_symbols: int, years: int, freq: str, seed: int) -> dict[str, Any]:
    from ai_trading.data import DataConfig, dataset_fingerprint, load
    from ai_trading.data.fingerprint import FingerprintStream
    from ai_trading.data.ingest import ingest
    from ai_trading.data.store import ParquetStore
    from ai_trading.data.validation import validate_bars
    from ai_trading.evaluation.strategies import baseline_strategy
    from ai_trading.evaluation.walkforward import WalkForwardConfig, run_walkforward
    from ai_trading.execution import SimulatorConfig, run_targets
    from ai_trading.execution.market import build_execution
    from ai_trading.features import FeatureBuilder

    work = Path(tempfile.mkdtemp(prefix="bench_scale_"))
    os.environ["AI_TRADING_CACHE_DIR"] = str(work / "cache")
    stamps = universe_timestamps(years, freq)
    (work / "raw").mkdir()
    write_universe(work / "raw", n_symbols, stamps, len(stamps) / years, seed)
    symbols = [f"S{i:04d}" for i in range(n_symbols)]
    rows = n_symbols * len(stamps)
    stages: dict[str, dict[str, float]] = {}
    baseline_rss = _rss_bytes()  # after the imports and the synthetic universe

    def record(name: str, seconds: float, peak: int, needed: int = rows * COLUMN_BYTES) -> None:
        stages[name] = {"seconds": seconds, "rows_per_s": rows / seconds, "peak_bytes": peak,
                        "needed_bytes": needed, "peak_over_needed": peak / needed}

    report, s, peak = measured(lambda: ingest(str(work / "raw"), work / "store"))
    record("ingest", s, peak)
    store = ParquetStore(str(work / "store"))
    parts, s, peak = measured(lambda: {sym: store.read(sym) for sym in symbols})
    record("read store", s, peak)
    _, s, peak = measured(lambda: [validate_bars(p, source="bench") for p in parts.values()])
    record("validate", s, peak)

    # What the loader feeds: each symbol's int64 timestamps and its (5, n) block of bar columns.
    feeds = [(sym, parts[sym].index.get_level_values("timestamp").as_unit("ns").asi8, parts[sym].to_numpy().T)
             for sym in sorted(parts)]

    def stream() -> str:
        fp = FingerprintStream()
        for sym, ns, block in feeds:
            fp.update(sym, ns, block)
        return fp.hexdigest()

    streamed, s, peak = measured(stream)
    record("fingerprint stream", s, peak)
    raw = b"".join(np.ascontiguousarray(p.index.get_level_values("timestamp").as_unit("ns").asi8).tobytes()
                   + np.ascontiguousarray(p.to_numpy().T).tobytes() for p in parts.values())
    assert len(raw) == rows * COLUMN_BYTES
    stream_ratio, raw_mb_s = fingerprint_ratio(stream, raw)
    feeds.clear()
    parts.clear()  # what the load below holds is its own
    config = DataConfig(symbols=symbols, source=str(work / "store"), layout="parquet_dataset")
    bars, s, peak = measured(lambda: load(config))
    record("load (read+validate+quality+fingerprint)", s, peak)
    assert bars.fingerprint == streamed
    _, s, peak = measured(lambda: load(config))
    record("load, fingerprint cached", s, peak)
    in_memory, s, peak = measured(lambda: dataset_fingerprint(bars.frame))
    record("fingerprint in-memory", s, peak)
    assert in_memory == streamed
    memory_ratio, _ = fingerprint_ratio(lambda: dataset_fingerprint(bars.frame), raw)
    raw = b""
    features, s, peak = measured(lambda: FeatureBuilder.default().build(bars))
    record("features", s, peak, nbytes(features.frame))
    execution, s, peak = measured(lambda: build_execution(bars.frame, SimulatorConfig(), frequency=bars.frequency))
    market, params = execution
    record("market arrays", s, peak, nbytes(market))
    run_targets(market, params, np.zeros(market.shape), np.random.default_rng(0), initial_cash=1.0)  # compile
    targets = np.full(market.shape, 1.0 / market.shape[1])
    sequence, s, peak = measured(lambda: run_targets(market, params, targets, np.random.default_rng(seed),
                                                     initial_cash=1e7))
    record("backtest (run_targets)", s, peak, nbytes(sequence) + targets.nbytes)
    del sequence
    walk = WalkForwardConfig(n_folds=5, train_bars=market.shape[0] // 4, baselines=("buy_and_hold",),
                             show_progress=False)
    trend = baseline_strategy("trend")
    run_walkforward(market, params, features, trend, walk)  # compile and warm the strategy's paths
    result, s, peak = measured(lambda: run_walkforward(market, params, features, trend, walk))
    record("walk-forward (trend, 5 folds, 1 baseline)", s, peak,
           nbytes(features.frame) + nbytes(market) + nbytes(result.results))
    del result
    shutil.rmtree(work)
    return {
        "symbols": n_symbols, "rows": rows, "freq": freq, "years": years, "store_files": report.files_written,
        "store_bytes": report.bytes, "stages": stages, "raw_sha256_mb_s": raw_mb_s,
        "fingerprint_stream_ratio": stream_ratio, "fingerprint_in_memory_ratio": memory_ratio,
        "features": len(features.feature_names), "peak_rss_bytes": _hwm_bytes(), "baseline_rss_bytes": baseline_rss,
    }


def run_size(n_symbols: int, years: int, freq: str, seed: int) -> dict[str, Any]:
    """One size in a fresh process (its own peaks, its own allocator settings)."""
    out = subprocess.run([sys.executable, __file__, "--one", str(n_symbols), "--years", str(years), "--freq", freq,
                          "--seed", str(seed)], capture_output=True, text=True, env={**os.environ, **CHILD_ENV})
    if out.returncode != 0:
        raise RuntimeError(f"bench child {n_symbols} x {years}y {freq} failed:\n{out.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _goal(ok: bool) -> str:
    return "met" if ok else "MISSED"


def print_size(r: dict[str, Any]) -> None:
    columns_mb = r["rows"] * COLUMN_BYTES / 1e6
    print(f"\n{r['symbols']} symbols x {r['years']}y {r['freq']}: {r['rows']:,} rows ({columns_mb:.1f} MB of bar "
          f"columns), store {r['store_files']} files {r['store_bytes'] / 1e6:.1f} MB, process peak RSS "
          f"{r['peak_rss_bytes'] / 1e6:.0f} MB (after imports and the synthetic universe "
          f"{r['baseline_rss_bytes'] / 1e6:.0f} MB)")
    print(f"  {'stage':44s} {'rows/s':>12s} {'seconds':>8s} {'peak MB':>8s} {'needed MB':>9s} {'peak/need':>9s}  "
          f"<= {PEAK_GOAL:g}x")
    for name, st in r["stages"].items():
        print(f"  {name:44s} {st['rows_per_s']:12,.0f} {st['seconds']:8.3f} {st['peak_bytes'] / 1e6:8.1f} "
              f"{st['needed_bytes'] / 1e6:9.1f} {st['peak_over_needed']:9.2f}  "
              f"{_goal(st['peak_over_needed'] <= PEAK_GOAL)}")
    print(f"  fingerprint vs raw hashlib.sha256 ({r['raw_sha256_mb_s']:.0f} MB/s of CPU) over the same bytes, "
          f"median of CPU-time ratios: stream {r['fingerprint_stream_ratio']:.2f}, in-memory frame "
          f"{r['fingerprint_in_memory_ratio']:.2f} (goal >= 0.5: "
          f"{'met' if r['fingerprint_stream_ratio'] >= 0.5 else 'MISSED'})")


def print_exponents(small: dict[str, Any], large: dict[str, Any]) -> None:
    growth = large["rows"] / small["rows"]
    print(f"\nscaling exponents, {small['rows']:,} -> {large['rows']:,} rows (x{growth:g}); 1.0 = linear; "
          f"goal: time <= {EXPONENT_GOAL:g}")
    print(f"  {'stage':44s} {'time':>6s} {'memory':>7s}  time goal")
    for name in small["stages"]:
        a, b = small["stages"][name], large["stages"][name]
        t_exp = math.log(b["seconds"] / a["seconds"]) / math.log(growth)
        m_exp = (math.log(b["peak_bytes"] / a["peak_bytes"]) / math.log(growth)
                 if a["peak_bytes"] > 0 and b["peak_bytes"] > 0 else float("nan"))
        print(f"  {name:44s} {t_exp:6.2f} {m_exp:7.2f}  {_goal(t_exp <= EXPONENT_GOAL)}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="20 and 100 symbols x 10 years daily only")
    p.add_argument("--symbols", type=int, nargs=2, default=None, metavar=("SMALL", "LARGE"),
                   help="a pair of universe sizes instead of the issue's (with --years and --freq)")
    p.add_argument("--years", type=int, default=10)
    p.add_argument("--freq", choices=["1d", "1min"], default="1d")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)  # child process: one size
    args = p.parse_args()
    if args.one is not None:
        print(json.dumps(run_one(args.one, args.years, args.freq, args.seed)))
        return
    if args.symbols is not None or args.quick:
        pair, years, freq, minute = (args.symbols or [20, 100]), args.years, args.freq, None
    else:
        pair, years, freq, minute = [50, 500], 10, "1d", (20, 1)
    small, large = (run_size(n, years, freq, args.seed) for n in pair)
    for r in (small, large):
        print_size(r)
    print_exponents(small, large)
    if minute is not None:
        print_size(run_size(minute[0], minute[1], "1min", args.seed))


if __name__ == "__main__":
    main()
