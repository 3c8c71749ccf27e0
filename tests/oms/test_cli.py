"""``python -m ai_trading.oms status`` as an operator runs it, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from ai_trading.oms.db import head_revision
from ai_trading.oms.intent_store import IntentStore
from ai_trading.oms.models import OrderEvent
from tests.oms.conftest import make_intent

ROOT = Path(__file__).resolve().parents[2]


def _status(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "ai_trading.oms", "status", *args], capture_output=True, text=True,
                          env=full_env, cwd=cwd, timeout=120)


def _with_password(dsn: str) -> str:
    url = make_url(dsn)
    return url.set(password="s3cr3t-pw").render_as_string(hide_password=False) if url.host else dsn


def test_status_at_head_shows_revision_states_and_last_reconciliation(store: IntentStore, oms_dsn: str) -> None:
    cids = [store.create(make_intent(n)).client_order_id for n in range(4)]
    store.claim_for_submit(cids[0])
    store.claim_for_submit(cids[1])
    store.record(cids[1], OrderEvent.acked("B1"))
    store.record(cids[2], OrderEvent.canceled())
    t0 = datetime(2024, 1, 2, 15, tzinfo=UTC)
    store.record_reconciliation("ok", {"adopted_fills": 3, "foreign": 1}, started_at=t0,
                                finished_at=t0 + timedelta(seconds=2))
    # the password (PostgreSQL trusts local connections, so any works) must never be printed
    out = _status("--dsn", _with_password(oms_dsn))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "s3cr3t-pw" not in out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert f"revision: {head_revision()} (head {head_revision()}, up to date)" in lines
    assert "open intents: 3" in lines
    assert [line.split() for line in lines if line.startswith("  ")][:4] == [
        ["CREATED", "1"], ["SUBMITTED", "1"], ["ACKED", "1"], ["PARTIAL_FILLED", "0"]]
    assert "all intents: 4" in lines and "  CANCELED        1" in lines
    assert ("last reconciliation: ok at 2024-01-02T15:00:02+00:00 (took 2.000 s; adopted_fills=3, foreign=1)"
            in lines)


def test_status_dsn_from_environment_never_migrated_exits_nonzero(oms_dsn: str) -> None:
    if oms_dsn.startswith("sqlite"):
        Path(make_url(oms_dsn).database or "").touch()  # an empty database file
    out = _status(env={"AI_TRADING_OMS_DSN": _with_password(oms_dsn)})
    assert out.returncode == 1
    assert f"revision: <none: never migrated> (head {head_revision()})" in out.stdout
    assert "alembic upgrade head" in out.stdout
    assert "s3cr3t-pw" not in out.stdout + out.stderr


def test_status_default_dsn_missing_file_says_to_upgrade(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "AI_TRADING_OMS_DSN"}
    out = subprocess.run([sys.executable, "-m", "ai_trading.oms", "status"], capture_output=True, text=True,
                         env={**env, "PYTHONPATH": str(ROOT)}, cwd=tmp_path, timeout=120)
    assert out.returncode == 1
    assert "no database file at oms.db" in out.stdout and "alembic upgrade head" in out.stdout
    assert not (tmp_path / "oms.db").exists()


def test_status_bad_dsn_exits_2_and_help_explains() -> None:
    assert _status("--dsn", "mysql://u:pw@h/db").returncode == 2
    helped = subprocess.run([sys.executable, "-m", "ai_trading.oms", "status", "--help"], capture_output=True,
                            text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert helped.returncode == 0 and "AI_TRADING_OMS_DSN" in helped.stdout and "alembic upgrade head" in helped.stdout


def test_reconcile_command_reconciles_with_the_configured_paper_venue(
        oms_engine: Any, oms_dsn: str, venue_dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    from ai_trading.execution import SimulatorConfig
    from ai_trading.oms.__main__ import main
    from ai_trading.oms.brokers.base import OrderRequest
    from ai_trading.oms.brokers.paper import PaperBroker
    from ai_trading.oms.db import make_engine
    from ai_trading.oms.intent_store import IntentStore
    from ai_trading.oms.models import OrderState
    from tests.oms.test_submission import BARS, intent

    overrides = ["data.symbols=[NVDA,ORCL]", "data.start=2003-01-01", "data.end=2003-03-31"]
    venue = PaperBroker(make_engine(venue_dsn), SimulatorConfig(), BARS, seed=0)
    venue.place_external(OrderRequest("by-hand", "NVDA", "buy", 10.0))
    store = IntentStore(oms_engine)
    store.create(intent(1))
    assert main(["reconcile", "--dsn", oms_dsn, "--venue-dsn", venue_dsn, *overrides]) == 0
    out = capsys.readouterr().out
    assert "reconciliation ok" in out and "submitted" in out and "foreign_order" in out and "by-hand" in out
    assert store.get(intent(1).client_order_id).state is OrderState.ACKED
    assert main(["status", "--dsn", oms_dsn]) == 0
    assert "last reconciliation: ok" in capsys.readouterr().out
