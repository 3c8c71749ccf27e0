"""The migrations on SQLite and PostgreSQL: pytest-alembic's built-in tests (single head, upgrade, models
match the DDL, up/down consistency), ``alembic check``, and the store refusing a database not at head.

The built-in tests are imported from ``pytest_alembic.tests`` and get our ``alembic_config`` and
``alembic_engine``; without the plugin loaded (PYTEST_DISABLE_PLUGIN_AUTOLOAD=1) they skip, saying so.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pytest_alembic.tests import (
    test_model_definitions_match_ddl,
    test_single_head_revision,
    test_up_down_consistency,
    test_upgrade,
)
from sqlalchemy import Engine, inspect

from ai_trading.errors import SchemaRevisionError
from ai_trading.oms.db import alembic_config as oms_alembic_config
from ai_trading.oms.db import head_revision, make_engine, upgrade_to_head
from ai_trading.oms.intent_store import IntentStore

__all__ = ["test_model_definitions_match_ddl", "test_single_head_revision", "test_up_down_consistency",
           "test_upgrade"]

ROOT = Path(__file__).resolve().parents[2]
TABLES = {"oms_intents", "oms_events", "oms_fills", "oms_reconciliations"}


@pytest.fixture
def alembic_config() -> Any:
    return oms_alembic_config()


@pytest.fixture
def alembic_engine(oms_dsn: str) -> Iterator[Engine]:
    engine = make_engine(oms_dsn)
    yield engine
    engine.dispose()


def test_first_revision_creates_exactly_the_store_tables(oms_dsn: str) -> None:
    engine = make_engine(oms_dsn)
    try:
        upgrade_to_head(engine)
        tables = set(inspect(engine).get_table_names())
        assert TABLES | {"alembic_version"} <= tables
        assert {t for t in tables - TABLES - {"alembic_version"} if not t.startswith("paper_")} == set()
    finally:
        engine.dispose()


def test_alembic_check_is_clean_from_the_command_line(oms_dsn: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "AI_TRADING_OMS_DSN": oms_dsn}
    alembic = [sys.executable, "-m", "alembic"]
    subprocess.run([*alembic, "upgrade", "head"], cwd=ROOT, env=env, check=True, capture_output=True)
    out = subprocess.run([*alembic, "check"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_store_refuses_a_database_never_migrated(oms_dsn: str) -> None:
    engine = make_engine(oms_dsn)
    try:
        with pytest.raises(SchemaRevisionError, match=r"<none: never migrated>.*alembic upgrade head"):
            IntentStore(engine)
    finally:
        engine.dispose()


def test_store_refuses_a_database_downgraded_below_head(oms_dsn: str) -> None:
    from alembic import command

    engine = make_engine(oms_dsn)
    try:
        upgrade_to_head(engine)
        IntentStore(engine)
        command.downgrade(oms_alembic_config(engine), "base")
        with pytest.raises(SchemaRevisionError, match=rf"needs {head_revision()}: run .*alembic upgrade head"):
            IntentStore(engine)
    finally:
        engine.dispose()
