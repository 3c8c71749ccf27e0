"""Operator commands of the order-management store.

``python -m ai_trading.oms reconcile [--dsn URL] [--venue-dsn URL] [OVERRIDES]`` reconciles the store with the
configured paper venue (startup reconciliation, ``ai_trading.oms.reconcile``) and prints the report.

``python -m ai_trading.oms status [--dsn URL]`` prints the database's schema revision against the
migrations' head, the open intents by state, totals by state and the last reconciliation run. The
database is ``--dsn``, else ``AI_TRADING_OMS_DSN``, else ``sqlite:///oms.db`` (as ``conf/oms/default.yaml``);
passwords are never printed.

Exit codes: 0 the store is at head and readable; 1 the database is missing or behind the migrations (the
message says to run ``alembic upgrade head``); 2 a bad DSN; 3 the database cannot be reached.
"""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

from sqlalchemy import Engine

from ai_trading.oms.db import current_revision, head_revision, make_engine
from ai_trading.oms.intent_store import IntentStore
from ai_trading.oms.models import OPEN_STATES, OrderState
from ai_trading.oms.operator import DSN_HELP, operate, resolve_dsn


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ai_trading.oms",
        description="Operator commands of the order-management (OMS) store.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    status = commands.add_parser(
        "status", help="schema revision, open intents by state, totals and the last reconciliation",
        description="Show the OMS store's schema revision (current vs head), open intents by state, totals "
                    "by state and the last reconciliation run. Exits 1 when the database is missing or not at "
                    "head (run `alembic upgrade head`), 2 on a bad DSN, 3 when the database cannot be reached.")
    status.add_argument("--dsn", metavar="URL", help=DSN_HELP)
    recon = commands.add_parser(
        "reconcile", help="reconcile the store with the configured paper venue and print the report",
        description="Reconcile every open intent with the paper venue (conf/oms/default.yaml: paper_venue.dsn, "
                    "foreign_orders; the venue's market from the composed data and simulator groups, e.g. "
                    "`data.symbols=[NVDA,ORCL] simulator=stressed`). Exits 4 when reconciliation fails (trading "
                    "must not start), 1 when a database is not at head.")
    recon.add_argument("--dsn", metavar="URL", help="the OMS store (default: oms.dsn)")
    recon.add_argument("--venue-dsn", metavar="URL", help="the paper venue's database (default: oms.paper_venue.dsn)")
    recon.add_argument("overrides", nargs="*", help="Hydra overrides of the train config (data, simulator, oms)")
    return parser


def reconcile_command(dsn: str | None, venue_dsn: str | None, overrides: list[str], out: TextIO) -> int:
    """Compose the config, open the store and the paper venue, reconcile, print the report; the exit code."""
    from hydra import compose, initialize_config_dir

    from ai_trading.data.loader import load
    from ai_trading.errors import ReconciliationError, SchemaRevisionError
    from ai_trading.oms.brokers.paper import PaperBroker
    from ai_trading.oms.reconcile import describe, reconcile
    from ai_trading.oms.submission import OrderManager
    from ai_trading.paths import CONF_DIR
    from ai_trading.wiring import oms_config, research_config

    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose(config_name="train", overrides=overrides)
    research, oms = research_config(cfg), oms_config(cfg)
    store_engine = make_engine(dsn or oms.dsn)
    venue_engine = make_engine(venue_dsn or oms.paper_venue.dsn)
    try:
        venue = PaperBroker(venue_engine, research.simulator, load(research.data).frame, seed=oms.paper_venue.seed)
        report = reconcile(OrderManager(IntentStore(store_engine), venue), oms.foreign_orders)
    except SchemaRevisionError as exc:
        print(f"error: {exc}", file=out)
        return 1
    except ReconciliationError as exc:
        print(f"reconciliation FAILED: {exc}", file=out)
        return 4
    finally:
        store_engine.dispose()
        venue_engine.dispose()
    print(describe(report), file=out)
    return 0


def status(dsn: str, out: TextIO) -> int:
    """Print the store's status to ``out``; returns the exit code (see the module docstring)."""
    return operate(dsn, out, lambda engine, shown, upgrade: _report(engine, shown, upgrade, out))


def _report(engine: Engine, shown: str, upgrade: str, out: TextIO) -> int:
    head = head_revision()
    current = current_revision(engine)
    print(f"database: {shown}", file=out)
    if current != head:
        print(f"revision: {current or '<none: never migrated>'} (head {head}): the database is behind the "
              f"migrations; {upgrade}", file=out)
        return 1
    print(f"revision: {current} (head {head}, up to date)", file=out)
    store = IntentStore(engine)
    counts = store.state_counts()
    open_counts = {s: n for s, n in counts.items() if s in OPEN_STATES}
    print(f"open intents: {sum(open_counts.values())}", file=out)
    for state in OrderState:
        if state in OPEN_STATES:
            print(f"  {state.value:<15} {open_counts[state]}", file=out)
    print(f"all intents: {sum(counts.values())}", file=out)
    for state in OrderState:
        print(f"  {state.value:<15} {counts[state]}", file=out)
    run = store.last_reconciliation()
    if run is None:
        print("last reconciliation: none recorded", file=out)
    else:
        listed = ", ".join(f"{k}={v}" for k, v in sorted(run.counts.items())) or "no counts"
        print(f"last reconciliation: {run.outcome} at {run.finished_at.isoformat()} "
              f"(took {(run.finished_at - run.started_at).total_seconds():.3f} s; {listed})", file=out)
        if run.detail:
            print(f"  {run.detail}", file=out)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "reconcile":
        return reconcile_command(args.dsn, args.venue_dsn, list(args.overrides), sys.stdout)
    return status(resolve_dsn(args.dsn), sys.stdout)


if __name__ == "__main__":
    sys.exit(main())
