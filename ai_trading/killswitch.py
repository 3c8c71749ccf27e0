"""Operator commands of the kill switch.

``python -m ai_trading.killswitch status [--history N]`` shows whether new orders are blocked, in which mode,
the last changes (who, why, when) and the alert outbox's messages by status (a growing ``failed`` count means a
sink is refusing alerts). ``engage --reason ... [--who ...] [--reduce-only]`` stops new orders
(reduce-only: only orders that shrink a position go out); ``release --reason ... [--who ...]`` lets them go again.
Cancels are never blocked. The database is ``--dsn``, else ``AI_TRADING_OMS_DSN``, else ``sqlite:///oms.db`` (as
``conf/oms/default.yaml``); passwords are never printed.

Exit codes: 0 done; 1 the database is missing or behind the migrations (the message says to run
``alembic upgrade head``); 2 a bad DSN or argument; 3 the database cannot be reached.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import TextIO

from sqlalchemy import Engine

from ai_trading.monitoring.killswitch import KillSwitch, KillSwitchMode, KillSwitchState
from ai_trading.monitoring.outbox import AlertOutbox
from ai_trading.oms.operator import DSN_HELP, operate, resolve_dsn


def _count(text: str) -> int:
    value = int(text) if text.isdigit() else -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 0")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ai_trading.killswitch",
        description="Show, engage or release the trading kill switch (persisted in the OMS database). While it "
                    "is engaged the execution engine sends no new orders (reduce-only: only orders that reduce a "
                    "position); cancels always go out. Every change is recorded with who, why and when.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    status = commands.add_parser("status", help="whether new orders are blocked, the mode and the last changes",
                                 description="Show the kill switch's state, its latest changes and the alert "
                                             "outbox's messages by status.")
    status.add_argument("--history", type=_count, default=10, metavar="N", help="changes to list (default: 10)")
    engage = commands.add_parser("engage", help="stop new orders (cancels still go out)",
                                 description="Engage the kill switch: the engine sends no new orders.")
    engage.add_argument("--reduce-only", action="store_true",
                        help="allow orders that only reduce an existing position")
    release = commands.add_parser("release", help="let new orders go out again",
                                  description="Release the kill switch.")
    for sub in (engage, release):
        sub.add_argument("--reason", required=True, help="why (recorded in the switch's history)")
        sub.add_argument("--who", default=None, help="who (default: the login name)")
    for sub in (status, engage, release):
        sub.add_argument("--dsn", metavar="URL", help=DSN_HELP)
    return parser


def _show(state: KillSwitchState, out: TextIO) -> None:
    if not state.engaged:
        print("kill switch: RELEASED (new orders allowed)", file=out)
    else:
        what = "only position-reducing orders allowed" if state.mode is KillSwitchMode.REDUCE_ONLY \
            else "no new orders"
        print(f"kill switch: ENGAGED mode={state.mode} ({what})", file=out)
    if state.last is not None:
        print(f"  since {state.last.at.isoformat()} by {state.last.who}: {state.last.reason}", file=out)


def run(args: argparse.Namespace, dsn: str, out: TextIO) -> int:
    """Run one parsed command against ``dsn``; returns the exit code (see the module docstring)."""

    def command(engine: Engine, shown: str, _upgrade: str) -> int:
        switch = KillSwitch(engine)
        print(f"database: {shown}", file=out)
        if args.command == "status":
            _show(switch.state(), out)
            for event in switch.history(args.history):
                mode = f" {event.mode}" if event.mode else ""
                print(f"  {event.at.isoformat()}  {event.action}{mode}  by {event.who}: {event.reason}", file=out)
            counts = AlertOutbox(engine).counts()
            print("alert outbox: " + ", ".join(f"{k} {v}" for k, v in counts.items()), file=out)
            return 0
        who = args.who or getpass.getuser()
        if args.command == "engage":
            mode = KillSwitchMode.REDUCE_ONLY if args.reduce_only else KillSwitchMode.BLOCK_ALL
            _show(switch.engage(args.reason, who=who, mode=mode), out)
        else:
            _show(switch.release(args.reason, who=who), out)
        return 0

    return operate(dsn, out, command)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return run(args, resolve_dsn(args.dsn), sys.stdout)


if __name__ == "__main__":
    sys.exit(main())
