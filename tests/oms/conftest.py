"""OMS fixtures: every database test runs on SQLite (a tmp file) and on PostgreSQL (``postgres`` marker),
each database built by the migrations (``alembic upgrade head``), never ``create_all``."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine

from ai_trading.oms.db import make_engine, upgrade_to_head
from ai_trading.oms.intent_store import IntentStore
from ai_trading.oms.models import OrderIntent

ALEMBIC_PLUGIN_MISSING = ("the pytest-alembic plugin is not loaded (PYTEST_DISABLE_PLUGIN_AUTOLOAD=1): its "
                          "alembic_runner fixture is missing; run without the variable or add -p pytest_alembic")


def pytest_configure(config: pytest.Config) -> None:
    # pytest-alembic's built-in tests carry its ``alembic`` marker; --strict-markers needs it registered
    # also when the plugin (which registers it) is not loaded.
    config.addinivalue_line("markers", "alembic: a pytest-alembic migration test")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.pluginmanager.hasplugin("pytest_alembic"):
        return
    for item in items:
        if "alembic_runner" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.skip(reason=ALEMBIC_PLUGIN_MISSING))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def oms_dsn(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database: a SQLite file, or a fresh PostgreSQL database dropped after the test."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'oms.db'}"
    return str(request.getfixturevalue("postgres_database"))


@pytest.fixture
def oms_engine(oms_dsn: str) -> Iterator[Engine]:
    """An engine on a database migrated to head."""
    engine = make_engine(oms_dsn)
    upgrade_to_head(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def store(oms_engine: Engine) -> IntentStore:
    return IntentStore(oms_engine)


def make_intent(n: int = 0, quantity: object = 10, **overrides: object) -> OrderIntent:
    fields: dict[str, object] = dict(strategy="momo", symbol="AAPL", side="buy", quantity=quantity,
                                     session="2024-01-02", horizon="1d", signal_hash=f"{n:08x}",
                                     created_at=datetime(2024, 1, 2, 14, 30, tzinfo=UTC))
    fields.update(overrides)
    return OrderIntent(**fields)  # type: ignore[arg-type]


def new_database_dsn(request: pytest.FixtureRequest, tmp_path: Path, oms_dsn: str, name: str) -> str:
    """Another empty database on the backend of ``oms_dsn`` (a venue's own), dropped after the test."""
    if oms_dsn.startswith("sqlite"):
        return f"sqlite:///{tmp_path / f'{name}.db'}"
    import uuid

    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(str(request.getfixturevalue("postgres_server")))
    database = f"t_{uuid.uuid4().hex[:16]}"
    admin = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{database}"')

    def drop() -> None:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')

    request.addfinalizer(drop)
    return url.set(database=database).render_as_string(hide_password=False)


@pytest.fixture
def venue_dsn(request: pytest.FixtureRequest, tmp_path: Path, oms_dsn: str) -> str:
    """The paper venue's own database, on the same backend as the OMS store, at head."""
    dsn = new_database_dsn(request, tmp_path, oms_dsn, "venue")
    engine = make_engine(dsn)
    upgrade_to_head(engine)
    engine.dispose()
    return dsn
