"""The live loop on the paper venue replaying bundled bars: per-bar latency and whole-replay throughput.

Run: ``python benchmarks/bench_live.py [--bars 300] [--symbols NVDA,ORCL]`` (SQLite files in a temp dir, a temp
MLflow store; a ridge champion fitted on the job's own features, signed and registered, as the tests build it).

Per bar it prints p50/p99 (milliseconds) of

- decide: bar arrival to the bar's orders committed in the OMS (features + policy + plan + the intents'
  transaction; the venue excluded) -- the goal is p99 <= 5 ms on SQLite;
- features: the one feature builder on the trailing window, with the schema check;
- policy: the verified model's target weights (PolicyModel.predict);
- commit: plan, kill-switch check and the intents' one transaction;
- send: the committed orders through the OrderManager to the paper venue (broker side, not in decide);

Every bar counts, the first included: the loop primes its decide path before it (``LiveLoop.prime``, a decision
that stores nothing), as it does in production. Then bars/s of the whole replay (decide, send, venue bar, fill
sync, cost learning, alert rules), and the baselines measured in the same run: the floor of decide, one durable
single-row SQLite commit (after a warm-up, 1000 commits, through the product's engine settings: ``make_engine``'s
WAL and synchronous=FULL, and with the plain ``sqlite3`` module on the same settings for reference), and the
feature build alone on the whole history against the per-bar build.
"""

from __future__ import annotations

import argparse
import logging
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from sqlalchemy import Column, Integer, MetaData, Table, insert

REPO = Path(__file__).resolve().parents[1]
GOAL_MS = 5.0  # p99 of decide on SQLite
sys.path.insert(0, str(REPO))


def _ms(values: list[float]) -> str:
    a = np.asarray(values) * 1e3
    return f"p50={np.percentile(a, 50):7.2f} ms  p99={np.percentile(a, 99):7.2f} ms  (n={len(a)})"


def _timed(step: Callable[[int], object], samples: int, warmup: int = 50) -> list[float]:
    for i in range(warmup):
        step(i)
    out = []
    for i in range(samples):
        t0 = time.perf_counter()
        step(i)
        out.append(time.perf_counter() - t0)
    return out


def raw_commits(scratch: Path, samples: int) -> tuple[list[float], list[float]]:
    """One-row durable commits: through ``make_engine`` (SQLAlchemy, the product's pragmas) and through the
    plain ``sqlite3`` module with the same journal and synchronous settings."""
    from ai_trading.oms.db import make_engine

    engine = make_engine(f"sqlite:///{scratch}/raw.db")
    table = Table("raw", MetaData(), Column("id", Integer, primary_key=True), Column("v", Integer))
    table.metadata.create_all(engine)
    statement = insert(table)

    def through_engine(i: int) -> None:
        with engine.begin() as conn:
            conn.execute(statement, {"v": i})

    with engine.connect() as conn:
        pragmas = {name: conn.exec_driver_sql(f"PRAGMA {name}").scalar() for name in ("journal_mode", "synchronous")}
    if str(pragmas["journal_mode"]).lower() != "wal" or int(pragmas["synchronous"]) != 2:
        raise SystemExit(f"the engine's SQLite settings are not WAL + synchronous=FULL: {pragmas}")
    engine_s = _timed(through_engine, samples)
    engine.dispose()
    plain = sqlite3.connect(scratch / "plain.db", isolation_level=None)
    plain.execute("PRAGMA journal_mode=WAL")
    plain.execute("PRAGMA synchronous=FULL")
    plain.execute("CREATE TABLE raw (id INTEGER PRIMARY KEY, v INTEGER)")

    def through_sqlite3(i: int) -> None:
        plain.execute("BEGIN")
        plain.execute("INSERT INTO raw (v) VALUES (?)", (i,))
        plain.execute("COMMIT")

    plain_s = _timed(through_sqlite3, samples)
    plain.close()
    return engine_s, plain_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=300)
    parser.add_argument("--symbols", default="NVDA,ORCL")
    parser.add_argument("--commits", type=int, default=1000, help="samples of the raw durable commit baseline")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    scratch = Path(tempfile.mkdtemp(prefix="bench_live_"))
    os.chdir(scratch)
    os.environ["AI_TRADING_HOME"] = str(scratch / "home")
    from ai_trading.features import FeatureBuilder
    from ai_trading.live import open_loop
    from tests.live.conftest import migrate
    from tests.live.helpers import fit_strategy, live_cfg, live_overrides, register

    overrides = live_overrides(scratch, f"sqlite:///{scratch}/mlflow.db", end="2004-12-31",
                               extra=[f"data.symbols=[{args.symbols}]", f"live.bars={args.bars}"])
    migrate(f"sqlite:///{scratch}/oms.db", f"sqlite:///{scratch}/venue.db")
    cfg = live_cfg(overrides)
    register(cfg, fit_strategy(cfg))
    loop = open_loop(cfg)
    start = time.perf_counter()
    stats = loop.run()
    elapsed = time.perf_counter() - start

    # Baselines, same run: one raw durable commit (the floor of decide), the feature build over the whole history.
    raw, plain = raw_commits(scratch, args.commits)
    builder = FeatureBuilder(cfg.features)
    whole = []
    for _ in range(5):
        t0 = time.perf_counter()
        builder.build(loop.bars.frame)
        whole.append(time.perf_counter() - t0)

    print(f"live loop, paper venue, SQLite, {len(loop.symbols)} symbols, {stats.bars} bars "
          f"(orders={stats.orders} fills={stats.fills})")
    p99 = float(np.percentile(np.asarray(stats.decide_s) * 1e3, 99))
    print(f"  decide (bar -> orders committed) {_ms(stats.decide_s)}   goal p99 <= {GOAL_MS:g} ms: "
          + ("met" if p99 <= GOAL_MS else "missed"))
    print(f"  features                         {_ms(stats.features_s)}")
    print(f"  policy                           {_ms(stats.policy_s)}")
    print(f"  commit (OMS)                     {_ms(stats.commit_s)}")
    print(f"  send (venue)                     {_ms(stats.send_s)}")
    print(f"  whole replay: {stats.bars / elapsed:.1f} bars/s")
    raw_med, commit_med = statistics.median(raw), statistics.median(stats.commit_s)
    whole_med, feat_med = statistics.median(whole), statistics.median(stats.features_s)
    print(f"  floor: one-row durable SQLite commit (WAL, synchronous=FULL), make_engine {_ms(raw)}")
    print(f"         the same through the plain sqlite3 module     {_ms(plain)}")
    print(f"  commit step p50 = {commit_med / raw_med:.1f}x the floor's p50; decide above the floor: "
          f"p50 {(statistics.median(stats.decide_s) - raw_med) * 1e3:.2f} ms")
    # Each decide holds one durable commit: when the disk's own commit p99 nears the goal, so does decide's.
    raw_p99 = float(np.percentile(np.asarray(raw) * 1e3, 99))
    print(f"  the disk's tail, same run: one durable commit p99={raw_p99:.2f} ms; decide p99 above it: "
          f"{p99 - raw_p99:.2f} ms")
    print(f"  baseline feature build, whole history ({len(loop.bars.frame)} rows) p50={whole_med * 1e3:.2f} ms: "
          f"per-bar trailing build = {feat_med / whole_med:.2f}x of it")


if __name__ == "__main__":
    main()
