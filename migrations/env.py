"""Alembic environment of every database schema of the product (the OMS store and the paper venue).

The database comes from, in order: a connection or engine handed in ``config.attributes["connection"]``
(tests, pytest-alembic, the application), ``-x dsn=...`` on the command line, ``sqlalchemy.url`` set on
the config, ``AI_TRADING_OMS_DSN``, else the default SQLite file ``oms.db`` (as ``conf/oms/default.yaml``).
"""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import Connection, Engine

import ai_trading.monitoring.tables  # the alert outbox and kill switch tables
import ai_trading.oms.stores  # noqa: F401  (registers every table on Base.metadata)
from ai_trading.oms.db import Base, make_engine

config = context.config
target_metadata = Base.metadata


def _dsn() -> str:
    return (context.get_x_argument(as_dictionary=True).get("dsn")
            or config.get_main_option("sqlalchemy.url")
            or os.environ.get("AI_TRADING_OMS_DSN")
            or "sqlite:///oms.db")


def _configure(connection: Connection) -> None:
    # render_as_batch: SQLite cannot ALTER most things; batch mode rebuilds the table instead.
    context.configure(connection=connection, target_metadata=target_metadata,
                      render_as_batch=connection.dialect.name == "sqlite", compare_type=True)


def run_migrations_offline() -> None:
    context.configure(url=_dsn(), target_metadata=target_metadata, literal_binds=True,
                      dialect_opts={"paramstyle": "named"}, render_as_batch=_dsn().startswith("sqlite"))
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    handed = config.attributes.get("connection")
    if isinstance(handed, Connection):
        _configure(handed)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = handed if isinstance(handed, Engine) else make_engine(_dsn())
    with engine.connect() as connection:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
    if handed is None:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
