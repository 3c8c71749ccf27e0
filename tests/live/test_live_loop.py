"""The live loop end to end on the paper venue: a real champion (ridge on the job's features, signed and
registered in a temp MLflow store), replayed bundled bars, SQLite and PostgreSQL, refusals at start, the kill
switch, a SIGKILL in the middle and auto-rollback."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from sqlalchemy import func, select

from ai_trading.errors import (
    FeatureSchemaMismatch,
    ManifestVerificationError,
    ProvenanceMismatch,
    SchemaRevisionError,
)
from ai_trading.features import FeatureBuilder
from ai_trading.interrupts import Interrupted, StopFlag
from ai_trading.live import LiveLoop, open_loop
from ai_trading.monitoring.killswitch import KillSwitch, KillSwitchMode
from ai_trading.monitoring.outbox import AlertOutbox
from ai_trading.oms.brokers.paper_tables import PaperOrderRow
from ai_trading.oms.db import make_engine
from ai_trading.oms.models import Side
from ai_trading.oms.tables import IntentRow
from tests.live.conftest import migrate
from tests.live.helpers import MODEL, fit_strategy, live_cfg, live_overrides, register

REPO = Path(__file__).resolve().parents[2]


def _intents(dsn: str) -> list[tuple[str, str, str]]:
    """(session, symbol, cid) of every intent the OMS holds."""
    engine = make_engine(dsn)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(IntentRow.session, IntentRow.symbol, IntentRow.client_order_id)).all()
        return [(str(a), str(b), str(c)) for a, b, c in rows]
    finally:
        engine.dispose()


def _venue_orders(dsn: str) -> int:
    engine = make_engine(dsn)
    try:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(PaperOrderRow)).scalar_one())
    finally:
        engine.dispose()


def _check_books_agree(loop: LiveLoop) -> None:
    """The OMS's filled positions equal the venue's, symbol by symbol."""
    venue: Counter[str] = Counter()
    for fill in loop.venue.list_fills():
        venue[fill.symbol] += fill.quantity if fill.side == Side.BUY.value else -fill.quantity
    oms = loop.engine.positions()
    for symbol in set(venue) | set(oms):
        assert float(oms.get(symbol, 0)) == pytest.approx(venue.get(symbol, 0.0), abs=1e-9)


def _replay_and_resume(overrides: list[str], oms_dsn: str, venue_dsn: str) -> None:
    cfg = live_cfg([*overrides, "live.bars=120"])
    register(cfg, fit_strategy(cfg))
    loop = open_loop(cfg)
    start = loop.venue.cursor
    stats = loop.run()
    assert stats.bars == 120 and loop.venue.cursor == start + 120
    assert stats.orders > 20 and stats.fills > 20  # the model trades
    _check_books_agree(loop)
    first = _intents(oms_dsn)
    # A restart continues at the venue's clock and re-sends nothing.
    again = open_loop(live_cfg(overrides))
    assert again.venue.cursor == start + 120
    more = again.run()
    assert again.venue.cursor == len(again.venue.market.timestamps) - 1 and more.bars > 50
    intents = _intents(oms_dsn)
    assert set(first) <= set(intents)
    assert len({cid for *_, cid in intents}) == len(intents) == _venue_orders(venue_dsn)
    per_bar = Counter((session, symbol) for session, symbol, _ in intents)
    assert max(per_bar.values()) == 1  # one order per symbol and bar at most
    _check_books_agree(again)
    assert abs(more.pnl) > 0


@pytest.mark.slow
def test_live_loop_replays_bars_on_sqlite_and_resumes_without_resending(tmp_path: Path, mlflow_uri: str) -> None:
    overrides = live_overrides(tmp_path, mlflow_uri, end="2003-12-31")
    oms, venue = f"sqlite:///{tmp_path}/oms.db", f"sqlite:///{tmp_path}/venue.db"
    migrate(oms, venue)
    _replay_and_resume(overrides, oms, venue)


@pytest.mark.slow
@pytest.mark.postgres
def test_live_loop_replays_bars_on_postgresql_and_resumes_without_resending(
        tmp_path: Path, mlflow_uri: str, postgres_database: str, request: pytest.FixtureRequest) -> None:
    from tests.oms.conftest import new_database_dsn

    venue = new_database_dsn(request, tmp_path, postgres_database, "venue")
    migrate(postgres_database, venue)
    overrides = live_overrides(tmp_path, mlflow_uri, oms_dsn=postgres_database, venue_dsn=venue, end="2003-12-31")
    _replay_and_resume(overrides, postgres_database, venue)


def test_trailing_window_features_equal_the_whole_history_build(sqlite_overrides: list[str]) -> None:
    cfg = live_cfg(sqlite_overrides)
    register(cfg, fit_strategy(cfg))
    loop = open_loop(cfg)
    whole = FeatureBuilder(cfg.features).build(loop.bars.frame).frame
    for t in (64, 100, 200):
        rows = loop.features_at(t)
        assert rows is not None
        expected = whole.xs(loop.venue.market.timestamps[t], level="timestamp").loc[loop.symbols]
        np.testing.assert_allclose(rows.to_numpy(np.float64), expected.to_numpy(np.float64), rtol=0, atol=0)
    assert loop.features_at(10) is None  # still warming up


def test_live_loop_checks_the_feature_schema_on_every_bar(sqlite_overrides: list[str]) -> None:
    cfg = live_cfg(sqlite_overrides)
    register(cfg, fit_strategy(cfg))
    loop = open_loop(cfg)
    assert loop.step()
    other = live_cfg([*sqlite_overrides, "features=default_intraday"]).features
    loop.builder = FeatureBuilder(other)  # features built by another spec than the model's
    cursor = loop.venue.cursor
    orders = len(_intents(cfg.oms.dsn))
    with pytest.raises(FeatureSchemaMismatch):
        loop.step()
    assert loop.venue.cursor == cursor and len(_intents(cfg.oms.dsn)) == orders


def test_live_loop_refuses_a_tampered_manifest_and_trades_nothing(sqlite_overrides: list[str],
                                                                  tmp_path: Path) -> None:
    cfg = live_cfg(sqlite_overrides)
    register(cfg, fit_strategy(cfg))
    manifests = list(tmp_path.glob(f"mlruns/**/registry/{MODEL}/v1/manifest.json"))
    assert len(manifests) == 1
    text = manifests[0].read_text()
    manifests[0].write_text(text.replace(cfg.features.schema_hash, "0" * 64))
    assert manifests[0].read_text() != text
    with pytest.raises(ManifestVerificationError):
        open_loop(cfg)
    assert _intents(cfg.oms.dsn) == [] and _venue_orders(cfg.oms.paper_venue.dsn) == 0


def test_live_loop_refuses_a_model_of_another_feature_schema(sqlite_overrides: list[str]) -> None:
    cfg = live_cfg(sqlite_overrides)
    register(cfg, fit_strategy(cfg))
    with pytest.raises(ProvenanceMismatch, match="feature_schema_hash"):
        open_loop(live_cfg([*sqlite_overrides, "features=default_intraday"]))
    assert _intents(cfg.oms.dsn) == []


@pytest.mark.parametrize("which", ["oms", "venue"])
def test_live_loop_refuses_a_database_below_head(tmp_path: Path, mlflow_uri: str, which: str) -> None:
    oms, venue = f"sqlite:///{tmp_path}/oms.db", f"sqlite:///{tmp_path}/venue.db"
    migrate(venue if which == "oms" else oms)
    cfg = live_cfg(live_overrides(tmp_path, mlflow_uri))
    with pytest.raises(SchemaRevisionError, match="alembic upgrade head"):
        open_loop(cfg)


def test_a_stop_asked_while_the_loop_opens_trades_no_bar(sqlite_overrides: list[str]) -> None:
    cfg = live_cfg([*sqlite_overrides, "live.bars=5"])
    register(cfg, fit_strategy(cfg))
    loop = open_loop(cfg)
    stop = StopFlag()
    stop.signal = signal.SIGTERM  # as the handler sets it when SIGTERM arrives during open_loop
    primed: list[bool] = []
    loop.prime = lambda: primed.append(True)  # type: ignore[method-assign]  # a spy: asked or not
    with pytest.raises(Interrupted):
        loop.run(stop)
    assert loop.stats.bars == 0 and _intents(cfg.oms.dsn) == []
    assert primed == []  # nothing decided either


def test_kill_switch_engaged_means_no_new_orders_through_the_loop(sqlite_overrides: list[str]) -> None:
    cfg = live_cfg([*sqlite_overrides, "live.bars=15"])
    register(cfg, fit_strategy(cfg))
    engine = make_engine(cfg.oms.dsn)
    KillSwitch(engine).engage("test: hold all orders", who="pytest")
    loop = open_loop(cfg)
    stats = loop.run()
    assert stats.bars == 15 and stats.orders == 0 and loop.engine.blocked > 0
    assert _intents(cfg.oms.dsn) == [] and _venue_orders(cfg.oms.paper_venue.dsn) == 0
    KillSwitch(engine).release("test over", who="pytest")
    assert loop.run().orders > 0  # released: the next bars trade
    KillSwitch(engine).engage("test: reduce only", who="pytest", mode=KillSwitchMode.REDUCE_ONLY)
    before = loop.engine.positions()
    loop.run()
    after = loop.engine.positions()
    for symbol, held in after.items():  # positions only shrank toward zero
        assert abs(held) <= abs(before.get(symbol, 0)) and held * before.get(symbol, 0) >= 0
    engine.dispose()


def test_priming_decides_the_next_bar_and_stores_sends_and_counts_nothing(sqlite_overrides: list[str]) -> None:
    cfg = live_cfg([*sqlite_overrides, "live.bars=1"])
    register(cfg, fit_strategy(cfg))
    engine = make_engine(cfg.oms.dsn)
    switch = KillSwitch(engine)
    switch.engage("test: hold all orders", who="pytest")
    loop = open_loop(cfg)
    cursor = loop.venue.cursor
    assert loop.prime() == []  # engaged: nothing would go out, and nothing is counted as held back
    assert loop.engine.blocked == 0
    switch.release("test over", who="pytest")
    primed = loop.prime()
    assert primed, "the first traded bar of the replay buys"
    assert loop.venue.cursor == cursor and loop.stats.decide_s == [] and loop.stats.features_s == []
    assert _intents(cfg.oms.dsn) == [] and _venue_orders(cfg.oms.paper_venue.dsn) == 0
    stats = loop.run()  # primes again, then trades the bar: the orders the preview named
    assert stats.bars == 1 and len(stats.decide_s) == 1
    assert sorted(cid for _s, _y, cid in _intents(cfg.oms.dsn)) == sorted(i.client_order_id for i in primed)
    assert _venue_orders(cfg.oms.paper_venue.dsn) == len(primed)
    engine.dispose()


def test_a_bar_leaves_the_collector_as_the_caller_had_it(sqlite_overrides: list[str]) -> None:
    cfg = live_cfg([*sqlite_overrides, "live.bars=2"])
    register(cfg, fit_strategy(cfg))
    loop = open_loop(cfg)
    gc.disable()
    try:
        assert loop.step()
        assert not gc.isenabled()
    finally:
        gc.enable()
    assert loop.step()
    assert gc.isenabled()


@pytest.mark.slow
def test_live_loop_stops_on_sigterm_and_survives_sigkill_without_duplicate_orders(tmp_path: Path,
                                                                                  mlflow_uri: str) -> None:
    # about 40 bars after the warm-up: a few for each process to stop in, the rest for the restart to finish
    overrides = live_overrides(tmp_path, mlflow_uri, end="2003-05-31")
    migrate(f"sqlite:///{tmp_path}/oms.db", f"sqlite:///{tmp_path}/venue.db")
    cfg = live_cfg(overrides)
    register(cfg, fit_strategy(cfg))
    args = [sys.executable, "-m", "ai_trading.live", *overrides, f"hydra.run.dir={tmp_path}/out"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def start_and_wait(orders: int) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 300  # start-up alone takes tens of seconds on a loaded machine
        while time.monotonic() < deadline and proc.poll() is None and len(_intents(cfg.oms.dsn)) < orders:
            time.sleep(0.1)
        assert proc.poll() is None, proc.communicate()[1].decode()[-3000:]
        assert len(_intents(cfg.oms.dsn)) >= orders, f"fewer than {orders} intents after 300 s"
        return proc

    proc = start_and_wait(10)  # SIGTERM: the bar in hand is finished, then one line and 143
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err.decode()[-3000:]
    assert err.decode().strip().splitlines()[-1].startswith("interrupted: ")
    proc = start_and_wait(len(_intents(cfg.oms.dsn)) + 10)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = len(_intents(cfg.oms.dsn))
    done = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "live: bars=" in done.stdout
    intents = _intents(cfg.oms.dsn)
    assert len(intents) > killed_at
    assert len({cid for *_, cid in intents}) == len(intents) == _venue_orders(cfg.oms.paper_venue.dsn)
    assert max(Counter((s, sym) for s, sym, _ in intents).values()) == 1
    loop = open_loop(cfg)
    assert loop.venue.cursor == len(loop.venue.market.timestamps) - 1
    _check_books_agree(loop)


def test_live_entrypoint_exits_2_with_one_line_on_a_tampered_manifest(sqlite_overrides: list[str],
                                                                      tmp_path: Path) -> None:
    cfg = live_cfg(sqlite_overrides)
    register(cfg, fit_strategy(cfg))
    for path in tmp_path.glob(f"mlruns/**/registry/{MODEL}/v1/data/**/*.joblib"):
        path.write_bytes(path.read_bytes() + b"tampered")
    args = [sys.executable, "-m", "ai_trading.live", *sqlite_overrides, f"hydra.run.dir={tmp_path}/out"]
    done = subprocess.run(args, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "[file_hash]" in last
    assert _intents(cfg.oms.dsn) == []


def test_drawdown_breach_rolls_the_champion_back_and_the_loop_reloads(tmp_path: Path, mlflow_uri: str) -> None:
    overrides = live_overrides(tmp_path, mlflow_uri, extra=["alerts.rules.drawdown.max_drawdown=0.0001",
                                                            "live.bars=40"])
    migrate(f"sqlite:///{tmp_path}/oms.db", f"sqlite:///{tmp_path}/venue.db")
    cfg = live_cfg(overrides)
    v1 = register(cfg, fit_strategy(cfg, seed=0), run_name="first")
    v2 = register(cfg, fit_strategy(cfg, seed=1, gain=2.0), run_name="second")
    loop = open_loop(cfg)
    assert loop.policy.manifest.version == v2.version
    while loop.stats.rollbacks == 0:  # up to the breach: the restart below comes while it lasts
        assert loop.step(), "the feed ended with no rollback"
    assert loop.policy.manifest.version == 3 and loop.policy.manifest.governance["restored_version"] == v1.version
    client = MlflowClient(tracking_uri=mlflow_uri)
    assert int(client.get_model_version_by_alias(MODEL, "champion").version) == 3
    assert client.get_model_version(MODEL, "3").run_id == client.get_model_version(MODEL, "1").run_id
    outbox = AlertOutbox(make_engine(cfg.oms.dsn))
    names = [row["rule"] for row in outbox.rows()]
    assert "live.drawdown_breach" in names and "live.model_rolled_back" in names
    # A restart replays the rule: the same peak and breach state, and a breach already raised is not raised
    # again (it would roll back a second time, or fail to, with no previous version left).
    assert loop.drawdown.firing is not None
    again = open_loop(cfg)
    assert again.drawdown.peak == pytest.approx(loop.drawdown.peak, rel=1e-12)
    assert again.drawdown.firing is not None and again.stats.alerts == 0
    assert len(outbox.rows()) == len(names)
    assert again.step()
    assert again.stats.rollbacks == 0 and "live.rollback_failed" not in [row["rule"] for row in outbox.rows()]


def test_live_config_names_a_missing_model_and_bad_live_keys(tmp_path: Path, mlflow_uri: str) -> None:
    from ai_trading.errors import ConfigError

    overrides = [o for o in live_overrides(tmp_path, mlflow_uri) if not o.startswith("model=")]
    with pytest.raises(ConfigError, match="model is required"):
        live_cfg(overrides)
    with pytest.raises(ConfigError, match=r"live\.bars"):
        live_cfg([*live_overrides(tmp_path, mlflow_uri), "live.bars=0"])
    with pytest.raises(ConfigError, match="live"):
        live_cfg([*live_overrides(tmp_path, mlflow_uri), "+live.unknown=1"])
