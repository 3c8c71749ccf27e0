"""Durability throughput of the OMS store against the raw single-row commit rate of the same database.

Run: ``python benchmarks/bench_oms.py [--seconds 1] [--batch 100] [--rounds 5]``; PostgreSQL too when
``AI_TRADING_OMS_DSN`` names one (a throwaway database is created on that server and dropped afterwards).
For SQLite (a temp file, WAL, synchronous=FULL) and PostgreSQL it prints:

- the ceilings of one durable step: on PostgreSQL a one-row autocommit INSERT loop through pgbench (a C
  client, when ``pgbench`` is installed) and through psycopg alone (no SQLAlchemy), and the store's own
  create statement through pgbench and through psycopg alone; on both databases a one-row INSERT + COMMIT
  through the same SQLAlchemy engine the store uses;
- durable intents/s: ``IntentStore.create`` one at a time (each a committed transaction);
- full lifecycles/s: create, claim to submit, ack, fill, each committed (4 durable steps);
- micro-batched intents/s: ``create_many`` of ``--batch`` intents per transaction;

each with its ratio to the raw psycopg rate ("x raw"; the SQLAlchemy one-row commit on SQLite) and the
p50/p99 latency of one durable step (per step kind for the lifecycle). A lifecycle is four commits, so its
ceiling is 0.25 x raw.

The goals, checked on PostgreSQL and printed as "goal met" / "goal missed" beside each figure: at least
1,000 durable intents/s one at a time (about 50% of what a C client commits), p50 under 1 ms per durable
step, and past 10,000 intents/s only through explicit micro-batching (``create_many``).

The C client's figure and the store's share of it come from ``--rounds`` pairs of one-second runs, pgbench's
one-row commits and the store's creates, alternating which goes first: a disk's commit time drifts by tens
of percent within a run, so two figures taken seconds apart would compare the drift as much as the clients.
The share is the median of the pairs' ratios. (The store's rate counts the time spent in ``create``; its
intents are built before the clock starts.)

The server's ``fsync`` setting is printed: with fsync off (the test cluster of ``.ci/start_postgres``) a
commit is a round trip and no disk flush, so the figures compare round trips and client overhead, not disks.
To compare commits on this machine's disk, as the goals mean, run it on a durable cluster::

    eval "$(.ci/start_postgres --durable)"; python benchmarks/bench_oms.py --seconds 2; $AI_TRADING_PG_STOP
"""

from __future__ import annotations

import argparse
import glob
import itertools
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TypeVar, cast

from sqlalchemy import Column, Engine, Integer, MetaData, Table, func, insert, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import make_url

from ai_trading.oms.db import make_engine, upgrade_to_head
from ai_trading.oms.intent_store import _CREATE_UNLESS_STORED, IntentStore, _intent_values
from ai_trading.oms.models import Fill, OrderEvent, OrderIntent, Side

GOAL_INTENTS_PER_S = 1000.0  # durable intents/s one at a time on PostgreSQL
GOAL_C_CLIENT_SHARE = 0.5  # ... which is about this share of a C client's one-row commit rate
GOAL_STEP_P50_MS = 1.0  # p50 latency of one durable step
GOAL_BATCHED_PER_S = 10_000.0  # reached only through explicit micro-batching

T = TypeVar("T")
_ids = itertools.count()
_RUN = uuid.uuid4().int % 10**9


@dataclass(frozen=True)
class Measure:
    database: str
    what: str
    rate: float
    p50: float = float("nan")
    p99: float = float("nan")
    ratio: float = float("nan")
    cpu: float = float("nan")  # this process's CPU ms per item


def _intent() -> OrderIntent:
    return OrderIntent(strategy="bench", symbol="AAPL", side=Side.BUY, quantity=Decimal(10), session="2024-01-02",
                       horizon="1d", signal_hash=f"{_RUN:08x}{next(_ids):08x}")


def _timed(seconds: float, step: Callable[[T], int], prepare: Callable[[], T] = lambda: None  # type: ignore[assignment,return-value]
           ) -> tuple[float, list[float], float]:
    """Run ``step`` (returning how many items it made durable) on what ``prepare`` builds, for ``seconds``
    of ``step`` time: items per second of ``step`` time, per-call latencies, and this process's CPU
    milliseconds per item (robust to other load on the machine, which stretches the wall-clock figures)."""
    for _ in range(5):  # warm the pool, the statement caches and (PostgreSQL) the prepared statements
        step(prepare())
    latencies: list[float] = []
    items = 0
    cpu = 0.0
    while sum(latencies) < seconds:
        made = prepare()
        c0, t0 = time.process_time(), time.perf_counter()
        items += step(made)
        latencies.append(time.perf_counter() - t0)
        cpu += time.process_time() - c0
    return items / sum(latencies), latencies, cpu * 1e3 / items


def _pct(latencies: list[float], q: int) -> float:
    if len(latencies) < 2:
        return latencies[0] * 1e3 if latencies else float("nan")
    return statistics.quantiles(latencies, n=100)[q - 1] * 1e3


def _psycopg_dsn(engine: Engine) -> str:
    return engine.url.set(drivername="postgresql").render_as_string(hide_password=False)


def _raw_psycopg(engine: Engine, table: str, seconds: float) -> tuple[float, list[float], float]:
    """One-row INSERTs in autocommit through psycopg alone: one round trip and one commit each."""
    import psycopg

    with psycopg.connect(_psycopg_dsn(engine), autocommit=True) as conn:
        def step(_: None) -> int:
            conn.execute(f"INSERT INTO {table} (v) VALUES (%s)", (1,))
            return 1
        return _timed(seconds, step)


def _raw_store_insert(engine: Engine, store: IntentStore, seconds: float) -> tuple[float, list[float], float]:
    """The store's own create statement (its SQL and parameters) through psycopg alone, in autocommit: what
    ``create`` would cost without SQLAlchemy and the store's Python (the statement's server time included)."""
    import psycopg

    sql = store._create_one.sql  # what create runs on PostgreSQL, with the same parameters
    with psycopg.connect(_psycopg_dsn(engine), autocommit=True) as conn:
        def step(intent: OrderIntent) -> int:
            conn.execute(sql, _intent_values(intent, datetime.now(UTC)))
            return 1
        return _timed(seconds, step, _intent)


def _pgbench() -> str | None:
    found = shutil.which("pgbench")
    if found:
        return found
    installed = sorted(glob.glob("/usr/lib/postgresql/*/bin/pgbench"))
    return installed[-1] if installed else None


def _raw_pgbench(engine: Engine, script: str, seconds: float) -> tuple[float, float] | None:
    """``script`` (one autocommit statement) run by pgbench (libpq, C, prepared): commits/s and mean latency
    ms (pgbench's own error when the script fails)."""
    pgbench = _pgbench()
    if pgbench is None:
        return None
    url = engine.url
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "step.sql"
        path.write_text(script)
        env = {**os.environ, **({"PGPASSWORD": url.password} if url.password else {})}
        command = [pgbench, "-n", "-c", "1", "-M", "prepared", "-T", str(max(1, round(seconds))),
                   "-h", url.host or "localhost", "-p", str(url.port or 5432), "-U", url.username or "postgres",
                   "-f", str(path), url.database or "postgres"]
        done = subprocess.run(command, capture_output=True, text=True, env=env)
        if done.returncode != 0 or "aborted" in done.stderr:
            raise RuntimeError(f"pgbench failed on {path.name}:\n{script}\n{done.stderr}")
        out = done.stdout
    tps = re.search(r"tps = ([0-9.]+)", out)
    latency = re.search(r"latency average = ([0-9.]+) ms", out)
    if tps is None or latency is None:
        raise RuntimeError(f"pgbench printed no tps/latency:\n{out}")
    return float(tps.group(1)), float(latency.group(1))


def _store_insert_script() -> str:
    """The store's create statement for pgbench: its SQL with one intent's values as literals (its times the
    server's clock), the two unique ids made new on every run (a random suffix: a rare repeat is a conflict
    that stores nothing, still a commit)."""
    intent = _intent()
    values = {**_intent_values(intent, datetime.now(UTC)), "created_at": func.now(), "updated_at": func.now()}
    sql = str(_CREATE_UNLESS_STORED.values(**values).compile(dialect=postgresql.dialect(),
                                                             compile_kwargs={"literal_binds": True}))
    for unique in (intent.client_order_id, intent.broker_safe_id):
        sql = sql.replace(f"'{unique}'", f"'{unique}' || (:n)::text", 1)
    # pgbench reads ":name" as a variable even inside a string literal: the literals' colons become chr(58)
    sql = re.sub(r"'[^']*'", lambda m: m.group(0).replace(":", "' || chr(58) || '"), sql)
    return f"\\set n random(1, 1000000000000)\n{sql};\n"


@dataclass(frozen=True)
class Round:
    """One pair of one-second runs: pgbench's one-row commits/s and mean latency (ms), the store's creates/s."""

    c_client: float
    c_client_ms: float
    store: float


def c_client_rounds(engine: Engine, raw_table: str, create: Callable[[OrderIntent], int],
                    rounds: int) -> list[Round]:
    """``rounds`` pairs of runs, pgbench first in even rounds and the store first in odd ones; empty without
    pgbench."""
    if _pgbench() is None:
        return []
    script = f"INSERT INTO {raw_table} (v) VALUES (1);\n"
    measured = []
    for n in range(rounds):
        if n % 2:
            store = _timed(1.0, create, _intent)[0]
        c_client = cast(tuple[float, float], _raw_pgbench(engine, script, 1.0))  # (pgbench is installed)
        if not n % 2:
            store = _timed(1.0, create, _intent)[0]
        measured.append(Round(*c_client, store))
    return measured


def bench(engine: Engine, name: str, seconds: float, batch: int,
          rounds: int) -> tuple[list[Measure], list[Round]]:
    """The table's rows and (PostgreSQL, with pgbench) the C client's rounds."""
    upgrade_to_head(engine)
    raw = Table("bench_raw_commit", MetaData(), Column("id", Integer, primary_key=True), Column("v", Integer))
    raw.create(engine)  # a throwaway table in the throwaway benchmark database
    store = IntentStore(engine)
    fill_time = datetime(2024, 1, 2, 15, tzinfo=UTC)
    postgres = engine.dialect.name == "postgresql"

    def raw_commit(_: None) -> int:
        with engine.begin() as conn:
            conn.execute(insert(raw), {"v": 1})
        return 1

    def create(intent: OrderIntent) -> int:
        store.create(intent)
        return 1

    step_latencies: dict[str, list[float]] = {"create": [], "claim": [], "ack": [], "fill": []}
    step_cpu: dict[str, float] = dict.fromkeys(step_latencies, 0.0)

    def lifecycle_steps() -> tuple[tuple[str, Callable[[], object]], ...]:
        intent = _intent()
        cid = intent.client_order_id
        ack = OrderEvent.acked("B" + cid[-12:])
        fill = OrderEvent.filled(Fill(f"T-{cid}", Decimal(10), Decimal("100.5"), Decimal("0.01"), fill_time))
        return (("create", lambda: store.create(intent)), ("claim", lambda: store.claim_for_submit(cid)),
                ("ack", lambda: store.record(cid, ack)), ("fill", lambda: store.record(cid, fill)))

    def lifecycle(steps: tuple[tuple[str, Callable[[], object]], ...]) -> int:
        for kind, do in steps:
            c0, t0 = time.process_time(), time.perf_counter()
            do()
            step_latencies[kind].append(time.perf_counter() - t0)
            step_cpu[kind] += time.process_time() - c0
        return 1

    def batched(intents: list[OrderIntent]) -> int:
        store.create_many(intents)
        return len(intents)

    rows = []
    reference = float("nan")
    measured: list[Round] = []
    if postgres:
        with engine.connect() as conn:
            fsync = conn.execute(text("SHOW fsync")).scalar_one()
        measured = c_client_rounds(engine, raw.name, create, rounds)
        if not measured:
            print("pgbench not found: no C-client figure", file=sys.stderr)
        else:
            # (pgbench prints a mean latency, shown in the p50 column)
            rows.append(Measure(name, "pgbench one-row INSERT (C)", statistics.median(r.c_client for r in measured),
                                p50=statistics.median(r.c_client_ms for r in measured)))
            own_c = _raw_pgbench(engine, _store_insert_script(), seconds)
            assert own_c is not None
            rows.append(Measure(name, "pgbench, the store's INSERT", own_c[0], p50=own_c[1]))
        reference, lat, cpu = _raw_psycopg(engine, raw.name, seconds)
        rows.append(Measure(name, "psycopg one-row INSERT", reference, _pct(lat, 50), _pct(lat, 99), 1.0, cpu))
    rate, lat, cpu = _timed(seconds, raw_commit)
    if not postgres:
        reference = rate
    rows.append(Measure(name, "SQLAlchemy one-row commit", rate, _pct(lat, 50), _pct(lat, 99), rate / reference, cpu))
    if postgres:
        rate, lat, cpu = _raw_store_insert(engine, store, seconds)
        rows.append(Measure(name, "psycopg, the store's INSERT", rate, _pct(lat, 50), _pct(lat, 99), rate / reference,
                            cpu))
    rate, lat, cpu = _timed(seconds, create, _intent)
    rows.append(Measure(name, "durable intents (create)", rate, _pct(lat, 50), _pct(lat, 99), rate / reference, cpu))
    rate, lat, cpu = _timed(seconds, lifecycle, lifecycle_steps)
    every = [t for kind in step_latencies.values() for t in kind[5:]]  # without the warm-up lifecycles
    rows.append(Measure(name, "full lifecycles (4 steps)", rate, _pct(every, 50), _pct(every, 99), rate / reference,
                        cpu))
    for kind, lat in step_latencies.items():
        rows.append(Measure(name, f"  step: {kind}", float("nan"), _pct(lat[5:], 50), _pct(lat[5:], 99),
                            cpu=step_cpu[kind] * 1e3 / len(lat)))
    rate, lat, cpu = _timed(seconds, batched, lambda: [_intent() for _ in range(batch)])
    rows.append(Measure(name, f"intents, create_many x{batch}", rate, _pct(lat, 50), _pct(lat, 99), rate / reference,
                        cpu))
    if postgres:
        rows.append(Measure(name, f"(server fsync={fsync})", float("nan")))
    return rows, measured


def _verdict(met: bool) -> str:
    return "goal met" if met else "goal missed"


def goals(rows: list[Measure], rounds: list[Round]) -> list[str]:
    """The PostgreSQL goals, each with its figure and whether it is met (the C client's share from its
    ``rounds``)."""
    pg = {m.what: m for m in rows if m.database == "postgresql"}
    if not pg:
        return ["goals: stated for PostgreSQL; set AI_TRADING_OMS_DSN to check them"]
    create = pg["durable intents (create)"]
    lines = [f"durable intents/s one at a time: {create.rate:.0f} (goal >= {GOAL_INTENTS_PER_S:.0f})  "
             f"{_verdict(create.rate >= GOAL_INTENTS_PER_S)}"]
    if rounds:
        shares = sorted(r.store / r.c_client for r in rounds)
        share = statistics.median(shares)
        lines.append(f"  the store's creates / the C client's one-row commits, median of {len(rounds)} paired "
                     f"1 s rounds: {share:.2f} (range {shares[0]:.2f}-{shares[-1]:.2f}) "
                     f"(goal about {GOAL_C_CLIENT_SHARE:.2f})  {_verdict(share >= GOAL_C_CLIENT_SHARE)}")
    own_c = pg.get("pgbench, the store's INSERT")
    if own_c is not None:
        lines.append(f"  = {create.rate / own_c.rate:.2f} x the C client's {own_c.rate:.0f}/s running the store's "
                     "INSERT itself (the client's share; the rest is the statement's own server time)")
    psycopg = pg["psycopg one-row INSERT"]
    lines.append(f"  = {create.rate / psycopg.rate:.2f} x psycopg's {psycopg.rate:.0f} one-row commits/s")
    own = pg["psycopg, the store's INSERT"]
    lines.append(f"  = {create.rate / own.rate:.2f} x psycopg's {own.rate:.0f}/s running the store's INSERT itself")
    for what in ("durable intents (create)", "full lifecycles (4 steps)", "  step: create", "  step: claim",
                 "  step: ack", "  step: fill"):
        p50 = pg[what].p50
        lines.append(f"p50 per durable step, {what.strip()}: {p50:.3f} ms (goal < {GOAL_STEP_P50_MS:g} ms)  "
                     f"{_verdict(p50 < GOAL_STEP_P50_MS)}")
    batched = next(m for what, m in pg.items() if what.startswith("intents, create_many"))
    lines.append(f"micro-batched intents/s ({batched.what.split()[-1]}): {batched.rate:.0f} "
                 f"(goal > {GOAL_BATCHED_PER_S:.0f})  {_verdict(batched.rate > GOAL_BATCHED_PER_S)}")
    return lines


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


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive count")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="time per measurement (default 1)")
    parser.add_argument("--batch", type=int, default=100, help="intents per create_many transaction (default 100)")
    parser.add_argument("--rounds", type=_positive, default=5,
                        help="paired 1 s runs of the C client and the store's create (default 5)")
    args = parser.parse_args(argv)
    rows: list[Measure] = []
    rounds: list[Round] = []
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite:///{Path(tmp) / 'bench.db'}")
        try:
            rows += bench(engine, "sqlite", args.seconds, args.batch, args.rounds)[0]
        finally:
            engine.dispose()
    server = os.environ.get("AI_TRADING_OMS_DSN", "")
    if server.startswith("postgresql"):
        with _postgres_database(server) as dsn:
            engine = make_engine(dsn)
            try:
                measured, rounds = bench(engine, "postgresql", args.seconds, args.batch, args.rounds)
                rows += measured
            finally:
                engine.dispose()
    else:
        print("AI_TRADING_OMS_DSN names no PostgreSQL server: SQLite only", file=sys.stderr)
    print(f"{'database':<11} {'measure':<28} {'per s':>10} {'x raw':>7} {'p50 ms/step':>12} {'p99 ms/step':>12} "
          f"{'cpu ms/item':>12}")
    for m in rows:
        print(f"{m.database:<11} {m.what:<28} {m.rate:>10.0f} {m.ratio:>7.2f} {m.p50:>12.3f} {m.p99:>12.3f} "
              f"{m.cpu:>12.3f}")
    print()
    print("\n".join(goals(rows, rounds)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
