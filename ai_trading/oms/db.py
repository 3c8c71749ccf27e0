"""Database plumbing shared by every store of the product: engines, the schema metadata, the
migration-revision check and statements compiled once to run on the driver (``DriverStatement``).

Every schema is created and changed only by the Alembic migrations in ``migrations/``; the
application refuses a database that is not at the migrations' head instead of creating tables.
"""

from __future__ import annotations

import functools
import select
import threading
from collections import namedtuple
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Connection, Engine, MetaData, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError, ResourceClosedError
from sqlalchemy.orm import DeclarativeBase

from ai_trading.errors import ConfigError, SchemaRevisionError

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent.parent / "migrations"

# Named constraints make migrations reproducible across PostgreSQL and SQLite (batch mode needs names
# to drop or alter a constraint).
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base of every table of the product; its metadata is what migrations must match."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def make_engine(dsn: str, **kwargs: Any) -> Engine:
    """An engine for ``dsn``: PostgreSQL through psycopg 3, or SQLite in WAL mode with a busy timeout.

    A bare ``postgresql://`` URL is pinned to psycopg 3 so no other driver is picked silently. A pooled
    PostgreSQL connection the server has closed (a restart, an idle timeout, ``pg_terminate_backend``) is
    replaced at checkout without a round trip (see ``_drop_if_closed``).
    """
    try:
        url = make_url(dsn)
    except Exception as exc:  # SQLAlchemy's ArgumentError names no field
        raise ConfigError(f"oms dsn is not a database URL: {exc}") from None
    backend = url.get_backend_name()
    if backend == "postgresql":
        if url.drivername == "postgresql":
            url = url.set(drivername="postgresql+psycopg")
        elif url.drivername != "postgresql+psycopg":
            raise ConfigError(f"oms dsn driver {url.drivername!r}: only postgresql+psycopg (psycopg 3) is supported")
        engine = create_engine(url, **kwargs)
        event.listen(engine, "checkout", _drop_if_closed)
        return engine
    if backend == "sqlite":
        # LIFO: the connection used last is used next, so one thread's steps share one connection. SQLite drops a
        # connection's page cache whenever another connection writes: connections taken in turn read every page
        # again after each other's writes. (A file's queue pool only: an in-memory database has one connection
        # per thread, and a caller's own pool class takes its own options.)
        if url.database not in (None, "", ":memory:") and "poolclass" not in kwargs:
            kwargs = {"pool_use_lifo": True, **kwargs}
        engine = create_engine(url, connect_args={"timeout": 30}, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    raise ConfigError(f"oms dsn backend {backend!r}: use sqlite:///path or postgresql+psycopg://...")


def upsert_insert(engine: Engine) -> Any:
    """The dialect's ``insert`` construct, whose ``on_conflict_do_nothing`` lets concurrent creators of one
    row both succeed (the stores run on PostgreSQL and SQLite only)."""
    return postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert


def _drop_if_closed(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    # The pool replaces a connection refused here; a connection lost during a statement raises from that
    # statement.
    closed = closed_by_server(dbapi_connection)
    if closed is not None:
        raise DisconnectionError(closed)


def closed_by_server(dbapi_connection: Any) -> str | None:
    """Why an idle psycopg connection is unusable (closed here or by the server), or None while it is open.

    An idle connection has nothing to read unless the server closed it: a closing server sends its FATAL
    message and end-of-file, so the socket turns readable. Polling it costs a system call where a pre-ping
    costs a round trip, which is most of a one-statement durable step.
    """
    if dbapi_connection.closed:
        return "PostgreSQL connection closed"
    poller = select.poll()  # not select.select, which fails on descriptors past 1023
    poller.register(dbapi_connection.fileno(), select.POLLIN)
    if poller.poll(0):  # readable, hung up or in error: each means the server has closed it
        return "PostgreSQL closed the connection while it was idle"
    return None


class KeptConnection:
    """One autocommit connection kept open for one-statement durable steps on PostgreSQL.

    Checking a connection out of the pool for every step, switching it to autocommit and back and returning
    it costs more client time than the step's statement; the kept connection costs a socket poll per step
    (``closed_by_server``: a connection the server closed while idle is replaced without a round trip). A
    thread that finds it in use takes a pooled connection for its step instead, so threads never wait on
    each other here. A connection a statement failed on is not kept: it goes back to the pool, invalidated
    by SQLAlchemy when it was lost.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._lock = threading.Lock()
        self._conn: Connection | None = None

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        """An autocommit connection for one step: the kept one when no other thread is using it."""
        if not self._lock.acquire(blocking=False):
            with self._engine.connect() as conn:
                yield conn
            return
        try:
            kept = self._conn
            if kept is not None and closed_by_server(kept.connection.dbapi_connection) is not None:
                kept.invalidate()
                kept.close()
                kept = None
            conn = kept if kept is not None else self._engine.connect()
            self._conn = conn
            try:
                yield conn
            except BaseException:
                self._conn = None
                conn.close()
                raise
        finally:
            self._lock.release()

    def close(self) -> None:
        """Return the kept connection to the pool (the next step takes a new one)."""
        with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                conn.close()


class DriverStatement:
    """A statement compiled once for one dialect: its SQL and the processing of its parameters, run on the
    connection's driver cursor, so a durable step spends no client time on compiling, the compiled cache or
    SQLAlchemy's result machinery (more client time than a short statement's own round trip).

    It stays a statement of the SQLAlchemy connection in what callers see: its cursor events fire around it,
    a driver error is raised as SQLAlchemy's (``IntegrityError``, ``OperationalError``, ...), and a
    connection the error shows lost is invalidated, as ``exec_driver_sql`` does."""

    def __init__(self, statement: Any, dialect: Any, column_keys: Sequence[str] | None = None) -> None:
        self._compiled = statement.compile(dialect=dialect, column_keys=list(column_keys or ()) or None)
        self.sql = self._compiled.string
        processors = {name: bind.type.dialect_impl(dialect).bind_processor(dialect)
                      for bind, name in self._compiled.bind_names.items()}
        self._processors = [(name, process) for name, process in processors.items() if process is not None]
        self._order = self._compiled.positiontup if self._compiled.positional else None
        # the named-tuple maker of the columns it last returned
        self._named: tuple[tuple[str, ...], Callable[[Iterable[Any]], Any]] | None = None

    def run(self, conn: Connection, values: Mapping[str, Any]) -> tuple[int, Sequence[Any]]:
        """The statement's row count and its rows as the driver returns them, as named tuples (in autocommit,
        a one-statement durable step)."""
        count, rows, names = self._on_driver(conn, self._params(values), many=False)
        if not rows:
            return count, rows
        if self._named is None or self._named[0] != names:
            self._named = (names, cast(Any, namedtuple("Row", names))._make)  # columns known only once run
        make = self._named[1]
        return count, [make(row) for row in rows]

    def run_many(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> int:
        """The statement once per row of parameters, in one ``executemany`` on the driver's connection; the
        rows it changed."""
        return self._on_driver(conn, [self._params(values) for values in rows], many=True)[0]

    def rows(self, conn: Connection, values: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """The selected rows (run on the driver's connection), each value converted as its column's type
        reads it (a SELECT's statement)."""
        readers = self._readers
        return [tuple(value if read is None else read(value) for read, value in zip(readers, row, strict=True))
                for row in self._on_driver(conn, self._params(values), many=False)[1]]

    @functools.cached_property
    def _readers(self) -> list[Any]:
        # (taken when ``rows`` first runs: only a SELECT has them)
        dialect = self._compiled.dialect
        return [column.type.dialect_impl(dialect).result_processor(dialect, None)
                for column in self._compiled.statement.selected_columns]

    def _on_driver(self, conn: Connection, params: Any, *,
                   many: bool) -> tuple[int, list[Any], tuple[str, ...]]:
        """The row count, the rows and their column names."""
        driver = conn.connection.dbapi_connection
        if driver is None:
            raise ResourceClosedError("the statement's connection is closed")
        error = conn.dialect.loaded_dbapi.Error
        cursor = _kept_cursor(conn, driver)
        try:
            conn.dispatch.before_cursor_execute(conn, cursor, self.sql, params, None, many)
            if many:
                cursor.executemany(self.sql, params)
            else:
                cursor.execute(self.sql, params)
            conn.dispatch.after_cursor_execute(conn, cursor, self.sql, params, None, many)
            if cursor.description is None:
                return cursor.rowcount, [], ()
            return cursor.rowcount, list(cursor.fetchall()), tuple(column[0] for column in cursor.description)
        except error as exc:
            lost = conn.dialect.is_disconnect(exc, driver, cursor)
            _drop_cursor(conn, cursor)
            if lost:
                conn.invalidate(exc)
            raise DBAPIError.instance(self.sql, params, exc, error, connection_invalidated=lost) from exc
        except BaseException:
            _drop_cursor(conn, cursor)
            raise

    def _params(self, values: Mapping[str, Any]) -> Any:
        params = self._compiled.construct_params(values)  # also checks that every parameter is given
        for name, process in self._processors:
            params[name] = process(params[name])
        if self._order is not None:  # a positional paramstyle (SQLite's qmark): the values in the SQL's order
            return tuple(params[name] for name in self._order)
        return params


_CURSOR = "ai_trading.driver_cursor"


def _kept_cursor(conn: Connection, driver: Any) -> Any:
    """The driver cursor kept with ``driver`` for this thread's statements: a new psycopg cursor costs more
    client time than a one-row durable step's own statement. A run reads all its statement returns before
    the next run, and one that fails drops its cursor (it may hold an unfinished SELECT, which on SQLite
    would keep a read snapshot open and block writers and checkpoints). The owner thread is checked because
    a pool may share one connection between threads (StaticPool); the connection because ``info`` outlives
    a closed driver connection until the pool reconnects."""
    kept = conn.info.get(_CURSOR)
    thread = threading.get_ident()
    if kept is not None and kept[0] == thread and kept[1].connection is driver:
        return kept[1]
    cursor = driver.cursor()
    conn.info[_CURSOR] = (thread, cursor)
    return cursor


def _drop_cursor(conn: Connection, cursor: Any) -> None:
    kept = conn.info.get(_CURSOR)
    if kept is not None and kept[1] is cursor:
        del conn.info[_CURSOR]
    cursor.close()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers run beside the single writer; synchronous=FULL makes each commit durable
    # (a crash right after a commit must not lose it); foreign keys are off by default in SQLite.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def alembic_config(engine: Engine | None = None, dsn: str | None = None) -> Any:
    """The Alembic config of ``migrations/``; an engine handed here is used by ``migrations/env.py``."""
    from alembic.config import Config

    if not MIGRATIONS_DIR.is_dir():
        raise ConfigError(f"migrations directory {MIGRATIONS_DIR} not found: install ai_trading editable "
                          "from its checkout (pip install -e .)")
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if engine is not None:
        config.attributes["connection"] = engine
    if dsn is not None:
        config.set_main_option("sqlalchemy.url", dsn.replace("%", "%%"))
    return config


@functools.lru_cache(maxsize=1)
def head_revision() -> str:
    """The single head revision of ``migrations/`` (read once per process: the code loaded is built for
    the migrations present when it started, and parsing them costs tens of milliseconds per store)."""
    from alembic.script import ScriptDirectory

    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    if len(heads) != 1:
        raise ConfigError(f"migrations/ has {len(heads)} heads {heads}; it must have exactly one")
    return heads[0]


def current_revision(engine: Engine) -> str | None:
    """The revision the database is stamped with, or None for a database never migrated."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade_to_head(engine: Engine) -> None:
    """Run every pending migration on ``engine`` (what ``alembic upgrade head`` does)."""
    from alembic import command

    command.upgrade(alembic_config(engine), "head")


def require_head(engine: Engine, what: str = "oms database") -> str:
    """Fail fast unless the database is at the migrations' head; returns the revision."""
    head = head_revision()
    current = current_revision(engine)
    if current != head:
        raise SchemaRevisionError(what, engine.url.render_as_string(hide_password=True), current, head)
    return head
