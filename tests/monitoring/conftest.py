"""Monitoring fixtures: every database test runs on SQLite (a tmp file) and on PostgreSQL (``postgres`` marker),
each database built by the migrations (``alembic upgrade head``), never ``create_all``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from ai_trading.oms.db import make_engine, upgrade_to_head


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_dsn(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database: a SQLite file, or a fresh PostgreSQL database dropped after the test."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'oms.db'}"
    return str(request.getfixturevalue("postgres_database"))


@pytest.fixture
def db_engine(db_dsn: str) -> Iterator[Engine]:
    """An engine on a database migrated to head."""
    engine = make_engine(db_dsn)
    upgrade_to_head(engine)
    yield engine
    engine.dispose()
