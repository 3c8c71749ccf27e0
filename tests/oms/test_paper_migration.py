"""The paper venue's migration on SQLite and PostgreSQL: up to head matches the tables' models, down removes
them, up again restores them."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import inspect

from ai_trading.oms.db import alembic_config, current_revision, head_revision, make_engine, upgrade_to_head

PAPER_TABLES = {"paper_venue", "paper_orders", "paper_fills"}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def dsn(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'venue.db'}"
    return str(request.getfixturevalue("postgres_database"))


def test_paper_venue_migration_up_down_up_without_drift(dsn: str) -> None:
    engine = make_engine(dsn)
    try:
        upgrade_to_head(engine)
        assert current_revision(engine) == head_revision()
        assert set(inspect(engine).get_table_names()) >= PAPER_TABLES
        uniques = {tuple(u["column_names"]) for u in inspect(engine).get_unique_constraints("paper_orders")}
        assert {("client_order_id",), ("broker_order_id",)} <= uniques
        command.check(alembic_config(engine))  # the models and the migrations agree (raises on drift)
        command.downgrade(alembic_config(engine), "base")
        assert not PAPER_TABLES & set(inspect(engine).get_table_names())
        upgrade_to_head(engine)
        assert set(inspect(engine).get_table_names()) >= PAPER_TABLES
    finally:
        engine.dispose()
