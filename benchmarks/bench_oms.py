"""Durability throughput of the OMS store against the raw single-row commit rate of the same database.

Run: ``python benchmarks/bench_oms.py [--seconds 1] [--batch 100]``; PostgreSQL too when
``AI_TRADING_OMS_DSN`` names one (a throwaway database is created on that server and dropped afterwards).
For SQLite (a temp file, WAL, synchronous=FULL) and PostgreSQL it prints:

- raw commits/s: a one-row INSERT + COMMIT loop through the same engine (the ceiling for one durable step);
- durable intents/s: ``IntentStore.create`` one at a time (each a committed transaction);
- full lifecycles/s: create, claim to submit, ack, fill, each committed (4 durable steps);
- micro-batched intents/s: ``create_many`` of ``--batch`` intents per transaction;

each with its ratio to the raw commit rate and the p50/p99 latency of one durable step (per step kind for
the lifecycle). A lifecycle is four commits, so its ceiling is 0.25 x raw; a durable step costs one pool
checkout (with its pre-ping), BEGIN, one to four statements and COMMIT.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Column, Engine, Integer, MetaData, Table, insert
from sqlalchemy.engine import make_url

from ai_trading.oms.db import make_engine, upgrade_to_head
from ai_trading.oms.intent_store import IntentStore
from ai_trading.oms.models import Fill, OrderEvent, OrderIntent

_ids = itertools.count()
_RUN = uuid.uuid4().int % 10**9


def _intent() -> OrderIntent:
    return OrderIntent(strategy="bench", symbol="AAPL", side="buy", quantity=10, session="2024-01-02",
                       horizon="1d", signal_hash=f"{_RUN:08x}{next(_ids):08x}")


def _timed(seconds: float, step: Callable[[], int]) -> tuple[float, list[float]]:
    """Run ``step`` (returning how many items it made durable) for ``seconds``; items/s and per-call latencies."""
    for _ in range(5):  # warm the pool, the statement caches and (PostgreSQL) the prepared statements
        step()
    latencies: list[float] = []
    items = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        items += step()
        latencies.append(time.perf_counter() - t0)
    return items / (time.perf_counter() - start), latencies


def _pct(latencies: list[float], q: int) -> float:
    if len(latencies) < 2:
        return latencies[0] * 1e3 if latencies else float("nan")
    return statistics.quantiles(latencies, n=100)[q - 1] * 1e3


def bench(engine: Engine, name: str, seconds: float, batch: int) -> list[tuple[str, str, float, float, float, float]]:
    upgrade_to_head(engine)
    raw = Table("bench_raw_commit", MetaData(), Column("id", Integer, primary_key=True), Column("v", Integer))
    raw.create(engine)  # a throwaway table in the throwaway benchmark database
    store = IntentStore(engine)
    fill_time = datetime(2024, 1, 2, 15, tzinfo=UTC)

    def raw_commit() -> int:
        with engine.begin() as conn:
            conn.execute(insert(raw), {"v": 1})
        return 1

    def create() -> int:
        store.create(_intent())
        return 1

    step_latencies: dict[str, list[float]] = {"create": [], "claim": [], "ack": [], "fill": []}

    def lifecycle() -> int:
        intent = _intent()
        cid = intent.client_order_id
        steps = (("create", lambda: store.create(intent)), ("claim", lambda: store.claim_for_submit(cid)),
                 ("ack", lambda: store.record(cid, OrderEvent.acked("B" + cid[-12:]))),
                 ("fill", lambda: store.record(cid, OrderEvent.filled(Fill(f"T-{cid}", 10, "100.5", "0.01",
                                                                           fill_time)))))
        for kind, do in steps:
            t0 = time.perf_counter()
            do()
            step_latencies[kind].append(time.perf_counter() - t0)
        return 1

    def batched() -> int:
        store.create_many([_intent() for _ in range(batch)])
        return batch

    rows = []
    raw_rate, raw_lat = _timed(seconds, raw_commit)
    rows.append((name, "raw one-row commits", raw_rate, 1.0, _pct(raw_lat, 50), _pct(raw_lat, 99)))
    rate, lat = _timed(seconds, create)
    rows.append((name, "durable intents (create)", rate, rate / raw_rate, _pct(lat, 50), _pct(lat, 99)))
    rate, _ = _timed(seconds, lifecycle)
    every = [t for kind in step_latencies.values() for t in kind[5:]]  # without the warm-up lifecycles
    rows.append((name, "full lifecycles (4 steps)", rate, rate / raw_rate, _pct(every, 50), _pct(every, 99)))
    for kind, lat in step_latencies.items():
        rows.append((name, f"  step: {kind}", float("nan"), float("nan"), _pct(lat[5:], 50), _pct(lat[5:], 99)))
    rate, lat = _timed(seconds, batched)
    rows.append((name, f"intents, create_many x{batch}", rate, rate / raw_rate, _pct(lat, 50), _pct(lat, 99)))
    return rows


@contextmanager
def _postgres_database(server_dsn: str) -> Iterator[str]:
    import psycopg

    url = make_url(server_dsn)
    name = f"bench_oms_{uuid.uuid4().hex[:12]}"
    admin = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield url.set(drivername="postgresql+psycopg", database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="time per measurement (default 1)")
    parser.add_argument("--batch", type=int, default=100, help="intents per create_many transaction (default 100)")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite:///{Path(tmp) / 'bench.db'}")
        try:
            rows += bench(engine, "sqlite", args.seconds, args.batch)
        finally:
            engine.dispose()
    server = os.environ.get("AI_TRADING_OMS_DSN", "")
    if server.startswith("postgresql"):
        with _postgres_database(server) as dsn:
            engine = make_engine(dsn)
            try:
                rows += bench(engine, "postgresql", args.seconds, args.batch)
            finally:
                engine.dispose()
    else:
        print("AI_TRADING_OMS_DSN names no PostgreSQL server: SQLite only", file=sys.stderr)
    print(f"{'database':<11} {'measure':<28} {'per s':>10} {'x raw':>7} {'p50 ms/step':>12} {'p99 ms/step':>12}")
    for name, what, rate, ratio, p50, p99 in rows:
        print(f"{name:<11} {what:<28} {rate:>10.0f} {ratio:>7.2f} {p50:>12.3f} {p99:>12.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
