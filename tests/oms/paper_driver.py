"""A paper-trading process for the fault-injection tests: reconciles, then trades the session to its end.

    python -m tests.oms.paper_driver OMS_DSN VENUE_DSN [--kill KIND NTH before|after] [--steps FILE] [--end DAY]

It reports ``ready`` once built (the parent's random kill clock starts there) and ``done`` at the session's end.
The tests start it with ``child`` in a forkserver whose preload (``tests.oms.paper_driver_warm``) imported it and
ran ``warm``, so each driver is a separate process that starts in milliseconds instead of seconds of imports and
numba cache loads; it builds its own engines.
``--kill`` SIGKILLs the process at the NTH durable step of KIND, just before its commit or just after it;
``--steps`` appends each durable step's kind to FILE. Both work through SQLAlchemy engine events registered
here (the product has no test hook). A durable step is a commit that wrote something, or an autocommitted
write (one statement, its writes possibly in a WITH); its kind comes from what it wrote (see ``_kind``).
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
import tempfile
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from sqlalchemy import Engine, event

from ai_trading.data import load_bars
from ai_trading.execution import SimulatorConfig
from ai_trading.execution.engine import EngineConfig, ExecutionEngine
from ai_trading.execution.market import MarketArrays
from ai_trading.execution.paper import PaperSession
from ai_trading.oms.brokers.paper import PaperBroker
from ai_trading.oms.db import make_engine
from ai_trading.oms.intent_store import IntentStore
from ai_trading.oms.submission import OrderManager

SYMBOLS = ["NVDA", "ORCL"]
START, END = "2003-01-01", "2003-03-31"  # 61 daily bars
SEED = 7
ENGINE = EngineConfig(strategy="cycle", horizon="1bar", version=1, lot_size=1.0, min_notional=100.0)
_WRITE = re.compile(r"^\s*(INSERT INTO|UPDATE)\s+\"?(\w+)", re.IGNORECASE)
# one statement whose WITH holds the writes (the store's durable steps on PostgreSQL): each write it makes
_WITH_WRITES = re.compile(r"\b(INSERT INTO|UPDATE)\s+\"?(\w+)", re.IGNORECASE)


def bars(end: str = END) -> Any:
    return load_bars(SYMBOLS, start=START, end=end)


def cycle_targets(market: MarketArrays, t: int) -> dict[str, float]:
    """Trades every bar: each symbol cycles through 0, 100 and 200 units, the symbols out of phase."""
    return {s: 100.0 * ((t + i) % 3) for i, s in enumerate(market.symbols)}


def _kind(writes: list[tuple[str, str, dict[str, Any]]]) -> str:
    tables = {table for _, table, _ in writes}
    if "oms_reconciliations" in tables:
        return "reconciliation"
    if ("INSERT INTO", "paper_orders") in {(v, t) for v, t, _ in writes}:
        return "venue_accept"
    if tables & {"paper_orders", "paper_fills", "paper_venue"}:
        return "venue_bar"
    for _verb, table, params in writes:
        if table == "oms_events":
            return f"event:{params.get('kind', '?')}"
    return "intents_batch" if "oms_intents" in tables else "other:" + ",".join(sorted(tables))


class Injector:
    def __init__(self, kill: tuple[str, int, str] | None, steps: str | None) -> None:
        self.kill, self.steps = kill, steps
        self.seen: dict[str, int] = {}
        self.kill_on_checkin = False

    def attach(self, engine: Engine) -> None:
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)
        event.listen(engine, "commit", self._commit)
        event.listen(engine, "checkin", self._checkin)

    @staticmethod
    def _autocommit(conn: Any) -> bool:
        return bool(conn._execution_options.get("isolation_level") == "AUTOCOMMIT")

    def _before(self, conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
        # a statement run with exec_driver_sql (the store's durable steps on PostgreSQL) has no compiled
        # parameters: its parameters are the driver's, by the same names
        compiled = getattr(context, "compiled_parameters", None) or [params if isinstance(params, dict) else {}]
        match = _WRITE.match(statement)
        if match is None:
            if not re.match(r"^\s*WITH\b", statement, re.IGNORECASE):
                return
            writes = [(verb.upper(), table, compiled[0]) for verb, table in _WITH_WRITES.findall(statement)]
            if not writes:
                return
            if self._autocommit(conn):
                conn.info["autocommit_kind"] = self._step(_kind(writes), "before")
            else:
                conn.info.setdefault("writes", []).extend(writes)
            return
        write = (match.group(1).upper(), match.group(2), compiled[0])
        if self._autocommit(conn):
            kind = "intent_create" if write[1] == "oms_intents" else "other_autocommit"
            conn.info["autocommit_kind"] = self._step(kind, "before")
        else:
            conn.info.setdefault("writes", []).append(write)

    def _after(self, conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
        kind = conn.info.pop("autocommit_kind", None)
        if kind is not None:
            self._maybe_kill(kind, "after")

    def _commit(self, conn: Any) -> None:
        writes = conn.info.pop("writes", [])
        if writes:
            kind = self._step(_kind(writes), "before")
            self.kill_on_checkin = self._matches(kind, "after")

    def _checkin(self, dbapi_connection: Any, record: Any) -> None:
        if self.kill_on_checkin:
            os.kill(os.getpid(), signal.SIGKILL)

    def _step(self, kind: str, phase: str) -> str:
        self.seen[kind] = self.seen.get(kind, 0) + 1
        if self.steps:
            with open(self.steps, "a") as f:
                f.write(kind + "\n")
        self._maybe_kill(kind, phase)
        return kind

    def _matches(self, kind: str, phase: str) -> bool:
        return self.kill is not None and self.kill == (kind, self.seen.get(kind, 0), phase)

    def _maybe_kill(self, kind: str, phase: str) -> None:
        if self._matches(kind, phase):
            os.kill(os.getpid(), signal.SIGKILL)


def main(argv: list[str] | None = None, report: Callable[[str], None] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("oms_dsn")
    parser.add_argument("venue_dsn")
    parser.add_argument("--kill", nargs=3, metavar=("KIND", "NTH", "PHASE"))
    parser.add_argument("--steps")
    parser.add_argument("--end", default=END, help="the session's last day (a longer session for random kills)")
    args = parser.parse_args(argv)
    kill = None if args.kill is None else (args.kill[0], int(args.kill[1]), args.kill[2])
    injector = Injector(kill, args.steps)
    oms_engine, venue_engine = make_engine(args.oms_dsn), make_engine(args.venue_dsn)
    injector.attach(oms_engine)
    injector.attach(venue_engine)
    venue = PaperBroker(venue_engine, SimulatorConfig(), bars(args.end), seed=SEED)
    manager = OrderManager(IntentStore(oms_engine), venue)
    session = PaperSession(ExecutionEngine(manager, ENGINE), venue, cycle_targets)
    say = report or (lambda line: print(line, flush=True))
    say("ready")
    session.start()
    session.run()
    say("done")
    oms_engine.dispose()
    venue_engine.dispose()
    return 0


WARM = False  # set by ``warm``: a child forked after it finds every import done and every numba kernel loaded


def warm() -> None:
    """Runs a few bars of the session on throwaway SQLite files (the forkserver's preload; no engine outlives it)."""
    global WARM
    from ai_trading.oms.db import upgrade_to_head

    with tempfile.TemporaryDirectory() as root:
        dsns = [f"sqlite:///{root}/oms.db", f"sqlite:///{root}/venue.db"]
        for dsn in dsns:
            engine = make_engine(dsn)
            upgrade_to_head(engine)
            engine.dispose()
        main([*dsns, "--end", "2003-01-10"], report=lambda line: None)
    WARM = True


def child(argv: list[str], conn: Connection) -> None:
    """A forkserver child's target: ``main`` reporting to ``conn`` (first whether it started warm); a failure is
    reported with its traceback, then raised (exit code 1)."""
    conn.send(("warm", WARM))
    try:
        main(argv, report=lambda line: conn.send((line, None)))
    except BaseException:
        conn.send(("error", traceback.format_exc()))
        raise


if __name__ == "__main__":
    sys.exit(main())
