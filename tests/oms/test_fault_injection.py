"""The crash guarantee, proven on a real process: a paper-trading driver (``tests/oms/paper_driver.py``) on an OMS
database and a venue database is SIGKILLed at every kind of durable step (just before its commit and just
after it) and at 50 random moments; each restart reconciles and trades on. After each kill no client order id
is twice at the venue and every venue order is an OMS intent; at the end every intent's state and fills equal
the venue's, and the books equal those of a session that never crashed (nothing lost, nothing doubled).
SQLite and PostgreSQL."""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import time
from collections import Counter
from multiprocessing import forkserver
from multiprocessing.context import ForkServerContext
from pathlib import Path
from typing import Any, NamedTuple

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
RANDOM_REACH = 0.7  # the random kills' expected total reach, as a share of the crash-free session's duration
_CONTEXT: list[ForkServerContext] = []


def _context() -> ForkServerContext:
    """A forkserver preloaded with the warmed driver (started once, with the repository importable)."""
    if not _CONTEXT:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["tests.oms.paper_driver_warm"])
        saved = os.environ.get("PYTHONPATH")
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), saved) if p)
        try:
            forkserver.ensure_running()
        finally:
            if saved is None:
                del os.environ["PYTHONPATH"]
            else:
                os.environ["PYTHONPATH"] = saved
        _CONTEXT.append(ctx)
    return _CONTEXT[0]


class Driver:
    """One paper-driver process, forked by the forkserver; its reports arrive on a pipe."""

    def __init__(self, oms_dsn: str, venue_dsn: str, *extra: str) -> None:
        ctx = _context()
        self.reports, sender = ctx.Pipe(duplex=False)
        self.process = ctx.Process(target=paper_driver.child, args=([oms_dsn, venue_dsn, *extra], sender))
        self.process.start()
        sender.close()
        self.seen: list[tuple[str, Any]] = []

    def next_report(self, timeout: float = 120.0) -> str | None:
        """The next report, or None once the process is gone."""
        try:
            if not self.reports.poll(timeout):
                raise TimeoutError(f"the paper driver reported nothing for {timeout} s")
            self.seen.append(self.reports.recv())
        except EOFError:
            return None
        return self.seen[-1][0]

    def wait(self, timeout: float = 300.0) -> int:
        while self.next_report(timeout) is not None:
            pass
        self.process.join(timeout)
        self.reports.close()
        assert self.process.exitcode is not None
        return self.process.exitcode

    @property
    def warm(self) -> bool:
        return ("warm", True) in self.seen

    @property
    def done(self) -> bool:
        return any(kind == "done" for kind, _ in self.seen)

    @property
    def error(self) -> str:
        return "".join(str(text) for kind, text in self.seen if kind == "error")[-3000:]


def _run(oms_dsn: str, venue_dsn: str, *extra: str) -> Driver:
    driver = Driver(oms_dsn, venue_dsn, *extra)
    driver.wait()
    assert driver.warm, "the forkserver did not preload the warmed driver"
    return driver


def _books(oms_dsn: str, venue_dsn: str) -> tuple[Any, ...]:
    """Checks the books agree and returns them: (cid, state, filled quantity, trade ids) per intent."""
    oms_engine, venue_engine = make_engine(oms_dsn), make_engine(venue_dsn)
    try:
        store = IntentStore(oms_engine)
        with oms_engine.connect() as conn:
            cids = list(conn.execute(select(IntentRow.client_order_id).order_by(IntentRow.client_order_id)).scalars())
        records = [store.get(cid) for cid in cids]
        assert all(r.state in (OrderState.FILLED, OrderState.ACKED, OrderState.PARTIAL_FILLED) for r in records)
        venue = PaperBroker(venue_engine, SimulatorConfig(), paper_driver.bars(), seed=paper_driver.SEED)
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


class Reference(NamedTuple):
    books: tuple[Any, ...]
    seconds: float  # from ready to done
    steps: int  # durable steps
    trading_steps: int  # durable steps other than the reconciliation at its start


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    """The session run once without a crash (on SQLite)."""
    root = tmp_path_factory.mktemp("reference")
    oms, venue = _fresh(f"sqlite:///{root / 'oms.db'}"), _fresh(f"sqlite:///{root / 'venue.db'}")
    driver = Driver(oms, venue, "--steps", str(root / "steps"))
    assert driver.next_report() == "warm" and driver.next_report() == "ready", driver.error
    started = time.monotonic()
    code = driver.wait()
    seconds = time.monotonic() - started
    assert code == 0 and driver.done and driver.warm, driver.error
    made = (root / "steps").read_text().splitlines()
    return Reference(_books(oms, venue), seconds, len(made), sum(kind != "reconciliation" for kind in made))


@pytest.mark.slow
def test_driver_killed_at_each_durable_step_loses_and_doubles_nothing(
        oms_engine: Any, oms_dsn: str, venue_dsn: str, reference: Reference) -> None:
    started = time.monotonic()
    for kind in STEP_KINDS:
        nth = "1" if kind == "reconciliation" else "3"
        for phase in ("before", "after"):
            killed = _run(oms_dsn, venue_dsn, "--kill", kind, nth, phase)
            code = killed.process.exitcode
            assert code == -signal.SIGKILL, (kind, phase, code, killed.error)
            assert not killed.done
            _no_duplicate_and_nothing_lost(oms_dsn, venue_dsn)
    finished = _run(oms_dsn, venue_dsn)
    assert finished.process.exitcode == 0 and finished.done, finished.error
    assert _books(oms_dsn, venue_dsn) == reference.books
    print(f"\n{len(STEP_KINDS) * 2} step kills + restarts in {time.monotonic() - started:.1f} s")


@pytest.mark.slow
def test_driver_killed_at_random_moments_loses_and_doubles_nothing(
        oms_engine: Any, oms_dsn: str, venue_dsn: str, reference: Reference, tmp_path: Path) -> None:
    rng = random.Random(20261201)
    # each kill lands uniformly within a window, widened or narrowed after each kill so that the kills' reach keeps
    # pace with RANDOM_REACH of the session (restarts and load make a fixed window miss or overrun the session)
    window = 2 * RANDOM_REACH * reference.seconds / RANDOM_KILLS
    windows: list[float] = []
    started = time.monotonic()
    outcomes = {"killed": 0, "finished": 0}
    last_steps: Counter[str] = Counter()  # the last durable step each killed run made before it died
    positions: list[int] = []  # durable steps made by the session so far, at each kill
    steps_so_far = trading_steps = 0  # the second leaves out the restarts' own reconciliations
    for i in range(RANDOM_KILLS):
        steps = tmp_path / f"steps{i}"
        steps.touch()
        driver = Driver(oms_dsn, venue_dsn, "--steps", str(steps))
        assert driver.next_report() == "warm" and driver.next_report() == "ready", driver.error
        windows.append(window)
        time.sleep(rng.uniform(0.0, window))
        assert driver.process.pid is not None
        os.kill(driver.process.pid, signal.SIGKILL)
        code = driver.wait(timeout=60)
        assert code in (0, -signal.SIGKILL), (code, driver.error)
        made = steps.read_text().splitlines()
        steps_so_far += len(made)
        trading_steps += sum(kind != "reconciliation" for kind in made)
        if code == -signal.SIGKILL:
            outcomes["killed"] += 1
            last_steps[made[-1] if made else "(none)"] += 1
            positions.append(steps_so_far)
        else:
            outcomes["finished"] += 1
        _no_duplicate_and_nothing_lost(oms_dsn, venue_dsn)
        lagging = trading_steps < RANDOM_REACH * reference.trading_steps * (i + 1) / RANDOM_KILLS
        # capped so that one long-lived run (the load dropping) cannot finish the session
        window = min(window * (1.25 if lagging else 0.8), reference.seconds / 5)
    finished = _run(oms_dsn, venue_dsn)
    assert finished.process.exitcode == 0 and finished.done, finished.error
    assert _books(oms_dsn, venue_dsn) == reference.books
    assert outcomes["killed"] >= RANDOM_KILLS - 1, outcomes
    # the kills landed at varied moments: after various kinds of step, at many points of the session
    assert len(last_steps) >= 4, last_steps
    assert len(set(positions)) >= RANDOM_KILLS // 2, positions
    assert max(positions) >= reference.steps / 3, positions  # and well into the session
    print(f"\n{outcomes} random kills + restarts in {time.monotonic() - started:.1f} s "
          f"(windows {min(windows):.2f}-{max(windows):.2f} s); "
          f"last step before each kill: {dict(last_steps)}; session steps at the kills: {positions} "
          f"(a crash-free session makes {reference.steps})")
