"""The loop's books and the rules it feeds: the engine's positions kept from new fills only and checked against the
OMS, the fills' realised costs against the cost model's predictions (cost spike, slippage drift), and the
drawdown peak across a restart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Connection

from ai_trading.errors import ReconciliationError
from ai_trading.live import LiveLoop, open_loop
from ai_trading.monitoring.outbox import AlertOutbox
from ai_trading.oms.db import make_engine
from tests.live.conftest import migrate
from tests.live.helpers import fit_strategy, live_cfg, live_overrides, register


def _rules_raised(dsn: str) -> list[str]:
    engine = make_engine(dsn)
    try:
        return [str(row["rule"]) for row in AlertOutbox(engine).rows()]
    finally:
        engine.dispose()


def test_engine_reads_only_new_fills_per_bar_and_its_positions_match_the_store(sqlite_overrides: list[str]) -> None:
    cfg = live_cfg([*sqlite_overrides, "live.bars=12"])
    register(cfg, fit_strategy(cfg))
    loop = open_loop(cfg)
    assert loop.run().fills > 0
    store = loop.engine.manager.store
    reads: list[int] = []
    original, working = store.fills_after, store.working_book

    def spy(after: int = 0, strategy: str | None = None) -> Any:
        reads.append(after)
        return original(after, strategy)

    def spy_working(strategy: str, after: int, conn: Any = None) -> Any:
        reads.append(after)
        return working(strategy, after, conn)

    store.fills_after = spy  # type: ignore[method-assign]
    store.working_book = spy_working  # type: ignore[method-assign]
    for _ in range(5):
        assert loop.step()
    assert len(reads) >= 10 and min(reads) > 0  # no bar re-reads the strategy's fills from the first one
    store.fills_after, store.working_book = original, working  # type: ignore[method-assign]
    assert loop.engine.check_positions() == loop.engine.positions() != {}
    symbol = next(iter(loop.engine.positions()))
    loop.engine._filled[symbol] += 1  # a book that drifted from the OMS's fills
    with pytest.raises(ReconciliationError, match=symbol):
        loop.engine.check_positions()


def test_a_bar_reads_its_book_and_the_kill_switch_and_creates_its_intents_in_one_transaction(
        sqlite_overrides: list[str]) -> None:
    cfg = live_cfg([*sqlite_overrides, "live.bars=4"])
    register(cfg, fit_strategy(cfg))
    loop = open_loop(cfg)
    store, switch = loop.engine.manager.store, loop.engine.kill_switch
    assert switch is not None
    seen: list[tuple[str, Any]] = []

    def spy(name: str, method: Any) -> Any:
        def call(*args: Any) -> Any:
            conn = args[-1] if args and isinstance(args[-1], Connection) else None
            if conn is not None:  # (the book after the bar reads on a connection of its own)
                assert conn.in_transaction()
                seen.append((name, conn))
            return method(*args)
        return call

    store.working_book = spy("book", store.working_book)  # type: ignore[method-assign]
    store.create_many = spy("create", store.create_many)  # type: ignore[method-assign]
    switch.state = spy("switch", switch.state)  # type: ignore[method-assign]
    orders = 0
    while orders == 0:
        seen.clear()
        assert loop.step()
        orders = loop.stats.orders
        # the decision's reads, the switch and the insert, each on the one connection of the bar's transaction
        names = [name for name, _ in seen]
        assert names[0] == "book" and names[-1] == "create"
        assert len({id(conn) for _, conn in seen}) == 1
    assert names == ["book", "switch", "create"]  # the switch is asked once there are orders


def _equities(loop: LiveLoop, bars: int) -> list[float]:
    out = []
    for _ in range(bars):
        assert loop.step()
        out.append(loop.book(loop.venue.cursor)[2])
    return out


def test_a_restart_keeps_the_drawdown_peak(sqlite_overrides: list[str]) -> None:
    cfg = live_cfg(sqlite_overrides)
    register(cfg, fit_strategy(cfg, gain=2.0))
    loop = open_loop(cfg)
    equities = _equities(loop, 25)
    assert loop.drawdown.peak == max(equities)
    again = open_loop(cfg)  # a new process: the peak comes back from the stored fills and the feed
    assert again.drawdown.peak == pytest.approx(max(equities), rel=1e-12)
    later = _equities(again, 3)
    assert again.drawdown.peak == pytest.approx(max(equities + later), rel=1e-12)


def _cost_run(tmp_path: Path, mlflow_uri: str, venue_preset: str) -> tuple[LiveLoop, list[str]]:
    tmp_path.mkdir()
    # the stressed preset costs about 2.4x what the default predicts: a spike here is 2x and 10 bps over
    overrides = live_overrides(tmp_path, mlflow_uri, extra=[f"simulator@venue_simulator={venue_preset}",
                                                            "alerts.rules.cost_spike.max_ratio=2.0",
                                                            "alerts.rules.cost_spike.max_excess_bps=10.0",
                                                            "live.bars=15"])
    migrate(f"sqlite:///{tmp_path}/oms.db", f"sqlite:///{tmp_path}/venue.db")
    cfg = live_cfg(overrides)
    register(cfg, fit_strategy(cfg))
    loop = open_loop(cfg)
    assert loop.run().fills > 10
    return loop, _rules_raised(cfg.oms.dsn)


def test_a_venue_costlier_than_the_cost_model_predicts_raises_cost_alerts_through_the_loop(
        tmp_path: Path, mlflow_uri: str) -> None:
    calm, calm_rules = _cost_run(tmp_path / "calm", mlflow_uri, "default")
    assert calm.config.venue_simulator == calm.config.simulator
    assert "execution.cost_spike" not in calm_rules and "execution.slippage_drift" not in calm_rules
    costly, costly_rules = _cost_run(tmp_path / "costly", mlflow_uri, "stressed")
    assert costly.config.venue_simulator != costly.config.simulator == calm.config.simulator
    assert "execution.cost_spike" in costly_rules and "execution.slippage_drift" in costly_rules
