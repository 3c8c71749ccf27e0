"""Two processes racing to claim the same intents: exactly one claims each (compare-and-set in the
database), on SQLite and PostgreSQL."""

from __future__ import annotations

import multiprocessing as mp
from typing import Any

from ai_trading.oms.db import make_engine
from ai_trading.oms.intent_store import IntentStore
from ai_trading.oms.models import OrderState
from tests.oms.conftest import make_intent

ROUNDS = 10


def _claimer(dsn: str, cids: list[str], barrier: Any, results: Any, worker: int) -> None:
    engine = make_engine(dsn)
    store = IntentStore(engine)
    try:
        for cid in cids:
            barrier.wait(timeout=60)
            results.put((worker, cid, store.claim_for_submit(cid)))
    finally:
        engine.dispose()


def test_two_processes_claim_each_intent_exactly_once(store: IntentStore, oms_dsn: str) -> None:
    cids = [store.create(make_intent(100 + n)).client_order_id for n in range(ROUNDS)]
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_claimer, args=(oms_dsn, cids, barrier, results, w)) for w in range(2)]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=120) for _ in range(2 * ROUNDS)]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    for cid in cids:
        claims = [won for _, c, won in outcomes if c == cid]
        assert sorted(claims) == [False, True], (cid, claims)
        assert store.get(cid).state is OrderState.SUBMITTED
        assert [e.kind.value for e in store.events(cid)] == ["SUBMITTED"]
