"""The crash guarantee, proven on a real process: a paper-trading driver (``tests/oms/paper_driver.py``) on an OMS
database and a venue database is SIGKILLed at every kind of durable step (just before its commit and just
after it) and at 50 random moments; each restart reconciles and trades on. After each kill no client order id
is twice at the venue and every venue order is an OMS intent; at the end every intent's state and fills equal
the venue's, and the books equal those of a session that never crashed (nothing lost, nothing doubled).
SQLite and PostgreSQL."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from ai_trading.execution import SimulatorConfig
from ai_trading.oms.brokers.paper import PaperBroker
from ai_trading.oms.brokers.paper_tables import PaperOrderRow
from ai_trading.oms.db import make_engine, upgrade_to_head
from ai_trading.oms.intent_store import IntentStore
from ai_trading.oms.models import OrderState
from ai_trading.oms.tables import IntentRow
from tests.oms import paper_driver
from tests.oms.test_submission import assert_books_agree

ROOT = Path(__file__).resolve().parents[2]
STEP_KINDS = ["reconciliation", "intents_batch", "intent_create", "event:SUBMITTED", "venue_accept", "event:ACKED",
              "venue_bar", "event:FILLED"]
RANDOM_KILLS = 50
LONG_END = "2003-12-31"  # random kills need a session longer than the kills' total reach


def _command(oms_dsn: str, venue_dsn: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "tests.oms.paper_driver", oms_dsn, venue_dsn, *extra]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def _run(oms_dsn: str, venue_dsn: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(_command(oms_dsn, venue_dsn, *extra), cwd=ROOT, env=_env(), capture_output=True,
                          text=True, timeout=300)


def _books(oms_dsn: str, venue_dsn: str, end: str = paper_driver.END) -> tuple[Any, ...]:
    """Checks the books agree and returns them: (cid, state, filled quantity, trade ids) per intent."""
    oms_engine, venue_engine = make_engine(oms_dsn), make_engine(venue_dsn)
    try:
        store = IntentStore(oms_engine)
        with oms_engine.connect() as conn:
            cids = list(conn.execute(select(IntentRow.client_order_id).order_by(IntentRow.client_order_id)).scalars())
        records = [store.get(cid) for cid in cids]
        assert all(r.state in (OrderState.FILLED, OrderState.ACKED, OrderState.PARTIAL_FILLED) for r in records)
        venue = PaperBroker(venue_engine, SimulatorConfig(), paper_driver.bars(end), seed=paper_driver.SEED)
        assert_books_agree(store, venue, [r.intent for r in records])
        return tuple((r.client_order_id, r.state, r.snapshot.filled_quantity,
                      tuple(f.trade_id for f in store.fills(r.client_order_id))) for r in records)
    finally:
        oms_engine.dispose()
        venue_engine.dispose()


def _no_duplicate_and_nothing_lost(oms_dsn: str, venue_dsn: str) -> None:
    """Mid-session (the driver just died): one venue order per client id, each an OMS intent's."""
    oms_engine, venue_engine = make_engine(oms_dsn), make_engine(venue_dsn)
    try:
        with oms_engine.connect() as conn:
            ours = set(conn.execute(select(IntentRow.broker_safe_id)).scalars())
        with venue_engine.connect() as conn:
            ids = list(conn.execute(select(PaperOrderRow.client_order_id)).scalars())
        assert len(ids) == len(set(ids))
        assert set(ids) <= ours, set(ids) - ours
    finally:
        oms_engine.dispose()
        venue_engine.dispose()


def _fresh(dsn: str) -> str:
    engine = make_engine(dsn)
    upgrade_to_head(engine)
    engine.dispose()
    return dsn


@pytest.fixture(scope="module")
def reference_books(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, ...]:
    """The books of the session run once without a crash (on SQLite)."""
    root = tmp_path_factory.mktemp("reference")
    oms, venue = _fresh(f"sqlite:///{root / 'oms.db'}"), _fresh(f"sqlite:///{root / 'venue.db'}")
    done = _run(oms, venue)
    assert done.returncode == 0 and "done" in done.stdout, done.stderr[-3000:]
    return _books(oms, venue)


@pytest.mark.slow
def test_driver_killed_at_each_durable_step_loses_and_doubles_nothing(
        oms_engine: Any, oms_dsn: str, venue_dsn: str, reference_books: tuple[Any, ...]) -> None:
    started = time.monotonic()
    for kind in STEP_KINDS:
        nth = "1" if kind == "reconciliation" else "3"
        for phase in ("before", "after"):
            killed = _run(oms_dsn, venue_dsn, "--kill", kind, nth, phase)
            assert killed.returncode == -signal.SIGKILL, (kind, phase, killed.returncode, killed.stderr[-3000:])
            assert "done" not in killed.stdout
            _no_duplicate_and_nothing_lost(oms_dsn, venue_dsn)
    finished = _run(oms_dsn, venue_dsn)
    assert finished.returncode == 0 and "done" in finished.stdout, finished.stderr[-3000:]
    assert _books(oms_dsn, venue_dsn) == reference_books
    print(f"\n{len(STEP_KINDS) * 2} step kills + restarts in {time.monotonic() - started:.1f} s")


@pytest.mark.slow
def test_driver_killed_at_random_moments_loses_and_doubles_nothing(
        oms_engine: Any, oms_dsn: str, venue_dsn: str, tmp_path: Path) -> None:
    rng = random.Random(20261201)
    started = time.monotonic()
    outcomes = {"killed": 0, "finished": 0}
    for _ in range(RANDOM_KILLS):
        proc = subprocess.Popen(_command(oms_dsn, venue_dsn, "--end", LONG_END), cwd=ROOT, env=_env(),
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.0, 0.6))
        proc.send_signal(signal.SIGKILL)
        code = proc.wait(timeout=60)
        proc.stdout.close()
        outcomes["killed" if code == -signal.SIGKILL else "finished"] += 1
        assert code in (0, -signal.SIGKILL), code
        _no_duplicate_and_nothing_lost(oms_dsn, venue_dsn)
    finished = _run(oms_dsn, venue_dsn, "--end", LONG_END)
    assert finished.returncode == 0 and "done" in finished.stdout, finished.stderr[-3000:]
    # the session got through its market: the venue processed its last bar
    books = _books(oms_dsn, venue_dsn, LONG_END)
    reference_root = tmp_path / "reference"
    reference_root.mkdir()
    ref_oms = _fresh(f"sqlite:///{reference_root / 'oms.db'}")
    ref_venue = _fresh(f"sqlite:///{reference_root / 'venue.db'}")
    assert _run(ref_oms, ref_venue, "--end", LONG_END).returncode == 0
    assert books == _books(ref_oms, ref_venue, LONG_END)
    assert outcomes["killed"] >= RANDOM_KILLS - 1, outcomes
    print(f"\n{outcomes} random kills + restarts in {time.monotonic() - started:.1f} s")
