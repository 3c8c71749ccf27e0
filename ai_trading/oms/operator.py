"""What every operator command on an OMS database shares: which database, how it is shown, and the exit codes.

The database is ``--dsn``, else ``AI_TRADING_OMS_DSN``, else ``sqlite:///oms.db`` (as ``conf/oms/default.yaml``).
Passwords are never printed. Exit codes: 0 done; 1 the database is missing or behind the migrations (the message
says to run ``alembic upgrade head``); 2 a bad DSN; 3 the database cannot be reached.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from ai_trading.errors import ConfigError, SchemaRevisionError
from ai_trading.oms.db import make_engine

DEFAULT_DSN = "sqlite:///oms.db"
DSN_HELP = ("database URL, e.g. sqlite:///oms.db or postgresql+psycopg://user@host:5432/oms "
            f"(default: $AI_TRADING_OMS_DSN, else {DEFAULT_DSN})")

# A command gets the engine, the URL as it may be shown, and the upgrade hint; it returns its exit code.
Command = Callable[[Engine, str, str], int]


def resolve_dsn(given: str | None) -> str:
    return given or os.environ.get("AI_TRADING_OMS_DSN") or DEFAULT_DSN


def operate(dsn: str, out: TextIO, command: Command) -> int:
    """Run ``command`` on the database ``dsn``, turning the ways a database can be wrong into exit codes; a
    missing SQLite file is reported, never created."""
    try:
        url = make_url(dsn)
    except Exception:  # SQLAlchemy's ArgumentError; the DSN may hold a password, so it is not echoed
        print("error: the DSN is not a database URL (sqlite:///path or postgresql+psycopg://...)", file=out)
        return 2
    shown = url.render_as_string(hide_password=True)
    upgrade = f"run `AI_TRADING_OMS_DSN='{shown}' alembic upgrade head` from the checkout"
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:") \
            and not Path(url.database).exists():
        print(f"database: {shown}\nerror: no database file at {url.database}: {upgrade} to create it", file=out)
        return 1
    try:
        engine = make_engine(dsn)
    except ConfigError as exc:
        print(f"error: {exc}", file=out)
        return 2
    try:
        return command(engine, shown, upgrade)
    except SchemaRevisionError as exc:
        print(f"error: {exc}", file=out)
        return 1
    except ConfigError as exc:
        print(f"error: {exc}", file=out)
        return 2
    except OperationalError as exc:
        print(f"database: {shown}\nerror: cannot reach the database: {str(exc.orig).strip()}", file=out)
        return 3
    finally:
        engine.dispose()
