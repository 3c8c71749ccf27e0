"""The alerts and kill switch migrations on SQLite and PostgreSQL: up creates the tables, down to the paper venue
removes exactly them, up again restores them, and ``alembic check`` finds no drift between models and DDL."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from alembic import command
from sqlalchemy import inspect

from ai_trading.oms.db import alembic_config, current_revision, make_engine, upgrade_to_head

ROOT = Path(__file__).resolve().parents[2]
ALERT_TABLES = {"alert_outbox", "alert_states"}
KILL_TABLES = {"kill_switch_events"}


def test_up_down_up_creates_and_removes_exactly_the_monitoring_tables(db_dsn: str) -> None:
    engine = make_engine(db_dsn)
    try:
        upgrade_to_head(engine)
        assert set(inspect(engine).get_table_names()) >= ALERT_TABLES | KILL_TABLES
        command.downgrade(alembic_config(engine), "0010_alerts_outbox")
        tables = set(inspect(engine).get_table_names())
        assert tables >= ALERT_TABLES and not KILL_TABLES & tables
        command.downgrade(alembic_config(engine), "0002_paper_venue")
        tables = set(inspect(engine).get_table_names())
        assert not (ALERT_TABLES | KILL_TABLES) & tables and "paper_orders" in tables
        assert current_revision(engine) == "0002_paper_venue"
        upgrade_to_head(engine)
        assert set(inspect(engine).get_table_names()) >= ALERT_TABLES | KILL_TABLES
    finally:
        engine.dispose()


def test_alembic_check_is_clean(db_dsn: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "AI_TRADING_OMS_DSN": db_dsn}
    alembic = [sys.executable, "-m", "alembic"]
    subprocess.run([*alembic, "upgrade", "head"], cwd=ROOT, env=env, check=True, capture_output=True)
    out = subprocess.run([*alembic, "check"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
