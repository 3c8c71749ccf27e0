"""Two processes submitting the same intents through ``OrderManager.submit`` to one paper venue: exactly one
venue order per intent (the claim's compare-and-set decides who sends), on PostgreSQL and SQLite."""

from __future__ import annotations

import multiprocessing as mp
import queue
import time
from pathlib import Path
from typing import Any

from ai_trading.execution import SimulatorConfig
from ai_trading.oms.brokers.paper import PaperBroker
from ai_trading.oms.db import make_engine, upgrade_to_head
from ai_trading.oms.intent_store import IntentStore
from ai_trading.oms.models import OrderState
from ai_trading.oms.submission import OrderManager
from tests.oms.test_submission import BARS, assert_books_agree, intent, venue_orders_per_id

ROUNDS = 8


def _submitter(oms_dsn: str, venue_dsn: str, barrier: Any, results: Any, worker: int) -> None:
    oms, venue_engine = make_engine(oms_dsn), make_engine(venue_dsn)
    try:
        manager = OrderManager(IntentStore(oms), PaperBroker(venue_engine, SimulatorConfig(), BARS, seed=3))
        for n in range(ROUNDS):
            barrier.wait(timeout=600)
            results.put((worker, n, manager.submit(intent(n)).state.value))
    finally:
        oms.dispose()
        venue_engine.dispose()


def collect(results: Any, procs: list[Any], count: int, timeout: float = 600) -> list[Any]:
    """``count`` items from ``results``; fails as soon as a worker died without sending its share."""
    items: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(items) < count:
        try:
            items.append(results.get(timeout=1))
        except queue.Empty:
            dead = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
            assert not dead, f"a worker died (exit codes {dead}) after {len(items)} of {count} results"
            assert time.monotonic() < deadline, f"{len(items)} of {count} results in {timeout} s"
    return items


def _opener(venue_dsn: str, warm_dsn: str, barrier: Any, results: Any) -> None:
    engine, warm = make_engine(venue_dsn), make_engine(warm_dsn)
    try:
        # A first open elsewhere pays the imports and compilations, so the openers reach the venue row together.
        PaperBroker(warm, SimulatorConfig(), BARS, seed=3)
        barrier.wait(timeout=600)
        results.put(PaperBroker(engine, SimulatorConfig(), BARS, seed=3).cursor)
    finally:
        engine.dispose()
        warm.dispose()


def test_processes_opening_one_fresh_venue_at_once_all_open_it(venue_dsn: str, tmp_path: Path) -> None:
    # Each opener pins the venue's market on first use; racing openers used to fail on the venue row's key.
    ctx = mp.get_context("spawn")
    workers = 6
    warm_dsns = [f"sqlite:///{tmp_path / f'warm{w}.db'}" for w in range(workers)]
    for dsn in warm_dsns:
        upgrade_to_head(make_engine(dsn))
    barrier, results = ctx.Barrier(workers), ctx.Queue()
    procs = [ctx.Process(target=_opener, args=(venue_dsn, warm, barrier, results)) for warm in warm_dsns]
    for p in procs:
        p.start()
    assert collect(results, procs, workers) == [0] * workers
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0


def test_two_processes_submitting_one_intent_make_one_venue_order(store: IntentStore, oms_dsn: str,
                                                                   venue_dsn: str) -> None:
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_submitter, args=(oms_dsn, venue_dsn, barrier, results, w)) for w in range(2)]
    for p in procs:
        p.start()
    outcomes = collect(results, procs, 2 * ROUNDS)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    venue = PaperBroker(make_engine(venue_dsn), SimulatorConfig(), BARS, seed=3)
    intents = [intent(n) for n in range(ROUNDS)]
    assert venue_orders_per_id(venue) == {i.broker_safe_id: 1 for i in intents}
    assert_books_agree(store, venue, intents)
    for n in range(ROUNDS):
        # the loser of the claim returns the intent as it found it (SUBMITTED while the winner sends, or ACKED)
        states = sorted(state for _, m, state in outcomes if m == n)
        assert OrderState.ACKED.value in states, states
        assert [e.kind.value for e in store.events(intent(n).client_order_id)] == ["SUBMITTED", "ACKED"]
